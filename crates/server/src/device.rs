//! The device side: MDM check-in and command connection, and the DDM endpoints, both as check-in
//! messages and as NanoMDM's DDM forwarding calls them (`X-Enrollment-ID`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use updraft_ddm::checkin::{
    CheckinMessage, CommandReport, CommandStatus, DdmEndpoint, GetBootstrapTokenResponse,
};
use updraft_ddm::{DeclarationItemsResponse, StatusReport};

use crate::db::timestamp;
use crate::identity::{Identity, IdentityError, TlsPeer};
use crate::secrets::verify_hmac;
use crate::writes;
use crate::{AppState, DdmForwarding};

/// A device-facing failure: a status and a reason in plain text. Never 401 to a device.
pub(crate) struct DeviceError(StatusCode, String);

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn bad_request(reason: impl std::fmt::Display) -> DeviceError {
    DeviceError(StatusCode::BAD_REQUEST, reason.to_string())
}

fn internal(reason: impl std::fmt::Display) -> DeviceError {
    tracing::error!(%reason, "device request failed");
    DeviceError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

const PLIST: &str = "application/x-apple-aspen-mdm";

/// A device's request as it arrived: what proves who sent it, and the body.
pub(crate) struct DeviceRequest {
    headers: HeaderMap,
    tls: Option<TlsPeer>,
    body: Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for DeviceRequest {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let tls = request.extensions().get::<TlsPeer>().cloned();
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self { headers, tls, body })
    }
}

impl AppState {
    /// The certificate the request proves it holds, checked against the device CAs.
    fn identify(&self, request: &DeviceRequest) -> Result<Identity, DeviceError> {
        let trust = self
            .device_trust
            .as_ref()
            .ok_or_else(|| bad_request(IdentityError::NoDeviceCa))?;
        trust
            .identify(
                &request.headers,
                &request.body,
                request.tls.as_ref(),
                self.clock.now(),
            )
            .map_err(|error| {
                tracing::info!(%error, "device request without a valid identity refused");
                bad_request(error)
            })
    }

    /// Refuses a certificate the device did not enroll with.
    async fn require_binding(
        &self,
        device_id: &str,
        identity: &Identity,
    ) -> Result<(), DeviceError> {
        if self
            .db
            .identity_bound(device_id, &identity.fingerprint)
            .await
            .map_err(internal)?
        {
            return Ok(());
        }
        tracing::error!(
            device = device_id,
            certificate = %identity.subject,
            fingerprint = %identity.fingerprint,
            "device identity mismatch: a request for this device carries a certificate it did not \
             enroll with (another device's, or an impersonation attempt); refused"
        );
        Err(DeviceError(
            StatusCode::FORBIDDEN,
            format!(
                "the certificate {:?} is not one device {device_id} enrolled with: the device must \
                 enroll again (Authenticate) to use it",
                identity.subject
            ),
        ))
    }
}

/// Parses on a blocking thread: a 2 MiB property list must not stall the async workers.
async fn parse_off_workers<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    body: &Bytes,
    parse: fn(&[u8]) -> Result<T, E>,
) -> Result<T, DeviceError> {
    let body = body.clone();
    tokio::task::spawn_blocking(move || parse(&body))
        .await
        .map_err(internal)?
        .map_err(bad_request)
}

/// `PUT /mdm/checkin`
pub(crate) async fn checkin(
    State(state): State<AppState>,
    request: DeviceRequest,
) -> Result<Response, DeviceError> {
    let identity = state.identify(&request)?;
    let message = parse_off_workers(&request.body, CheckinMessage::parse).await?;
    let enrollment = message.enrollment();
    let id = enrollment
        .enrollment_id()
        .ok_or_else(|| bad_request("no enrollment id"))?;
    let device_id = enrollment.device_id().unwrap_or_default().to_owned();
    if let CheckinMessage::Authenticate(authenticate) = message {
        let holder = state
            .record_authenticate(
                authenticate,
                id,
                Some((device_id.clone(), identity.clone())),
            )
            .await
            .map_err(internal)?;
        return match holder {
            None => Ok(StatusCode::OK.into_response()),
            Some(holder) => {
                tracing::error!(
                    device = %device_id,
                    holder = %holder,
                    certificate = %identity.subject,
                    "device identity reuse: an Authenticate carries another device's certificate; refused"
                );
                Err(DeviceError(
                    StatusCode::FORBIDDEN,
                    format!(
                        "the certificate {:?} belongs to another enrolled device: each device \
                         enrolls with an identity of its own",
                        identity.subject
                    ),
                ))
            }
        };
    }
    state.require_binding(&device_id, &identity).await?;
    let now = timestamp(state.clock.now());
    match message {
        CheckinMessage::Authenticate(_) => {}
        CheckinMessage::TokenUpdate(update) => {
            let first = state
                .record_token_update(update, id.clone())
                .await
                .map_err(internal)?;
            if first {
                // Ask the device its name and time zone, then turn on declarative management:
                // the device answers both as soon as it connects.
                let (key, now) = (id.clone(), timestamp(state.clock.now()));
                state
                    .writer
                    .write("queueing DeviceInformation", move |c| {
                        writes::queue_device_information(c, &key, &now)
                    })
                    .await
                    .map_err(internal)?;
                state.notify(vec![id.clone()]).await.map_err(internal)?;
            }
        }
        CheckinMessage::CheckOut(_) => {
            state.record_check_out(id).await.map_err(internal)?;
        }
        CheckinMessage::SetBootstrapToken(set) => {
            let sealed = set
                .bootstrap_token
                .filter(|token| !token.is_empty())
                .map(|token| state.sealing_key.seal(&token));
            let key = id.clone();
            state
                .writer
                .write("escrowing the bootstrap token", move |c| {
                    writes::set_bootstrap_token(c, &key, sealed.as_deref(), &now)
                })
                .await
                .map_err(internal)?;
        }
        CheckinMessage::GetBootstrapToken(_) => {
            let key = id.clone();
            let sealed = state
                .writer
                .write("serving the bootstrap token", move |c| {
                    writes::take_bootstrap_request(c, &key, &now)
                })
                .await
                .map_err(internal)?;
            let token = sealed.and_then(|sealed| state.sealing_key.open(&sealed));
            let response = GetBootstrapTokenResponse {
                bootstrap_token: token,
            };
            return Ok(([("content-type", "application/xml")], response.to_xml()).into_response());
        }
        CheckinMessage::DeclarativeManagement(request) => {
            // Contact is recorded with the status report; reads stay reads.
            let endpoint = request.parsed_endpoint().map_err(bad_request)?;
            return ddm(&state, &id, endpoint, request.data.unwrap_or_default()).await;
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `PUT /mdm`: NanoMDM's one endpoint for both, told apart as Apple's devices send them: a
/// check-in has `Content-Type: application/x-apple-aspen-mdm-checkin`, anything else is a
/// command report.
pub(crate) async fn single_endpoint(
    state: State<AppState>,
    request: DeviceRequest,
) -> Result<Response, DeviceError> {
    let checkin_type = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-apple-aspen-mdm-checkin"));
    if checkin_type {
        checkin(state, request).await
    } else {
        connect(state, request).await
    }
}

/// `PUT /mdm/connect`: the device reports a command result (or Idle) and gets the next command.
pub(crate) async fn connect(
    State(state): State<AppState>,
    request: DeviceRequest,
) -> Result<Response, DeviceError> {
    let identity = state.identify(&request)?;
    let report = parse_off_workers(&request.body, CommandReport::parse).await?;
    state.require_binding(report.device_id(), &identity).await?;
    let id = report.enrollment();
    let result = report
        .command_uuid
        .clone()
        .filter(|_| report.status != CommandStatus::Idle)
        .map(|uuid| (uuid, report.status));
    let answers = report
        .query_responses
        .filter(|_| report.status == CommandStatus::Acknowledged);
    let now = state.clock.now();
    let next = state
        .writer
        .write("taking a command report", move |c| {
            if let Some(answers) = &answers {
                writes::device_information(c, &id, answers)?;
            }
            let result = result
                .as_ref()
                .map(|(uuid, status)| (uuid.as_str(), *status));
            writes::connect(c, &id, result, now)
        })
        .await
        .map_err(internal)?;
    match next {
        Some(command) => Ok(([("content-type", PLIST)], command).into_response()),
        None => Ok(StatusCode::OK.into_response()),
    }
}

/// DDM over NanoMDM's forwarding: the enrollment comes from `X-Enrollment-ID`, which NanoMDM
/// sets from the identity it verified; the HMAC proves the request came from it.
fn forwarded_enrollment(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, DeviceError> {
    match &state.forwarding {
        DdmForwarding::Signed(key) => {
            let signature = headers
                .get("x-hmac-signature")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad_request("X-Hmac-Signature is required"))?;
            if !verify_hmac(key, body, signature) {
                return Err(DeviceError(
                    StatusCode::FORBIDDEN,
                    "X-Hmac-Signature does not match the body".into(),
                ));
            }
        }
        DdmForwarding::Unsigned => {}
        DdmForwarding::Off => {
            return Err(DeviceError(
                StatusCode::NOT_FOUND,
                "DDM forwarding is off on this server".into(),
            ));
        }
    }
    headers
        .get("x-enrollment-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| bad_request("X-Enrollment-ID is required"))
}

/// `GET /ddm/tokens`, `GET /ddm/declaration-items`, `GET /ddm/declaration/<type>/<id>`, `PUT /ddm/status`
pub(crate) async fn forwarded(
    State(state): State<AppState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DeviceError> {
    let id = forwarded_enrollment(&state, &headers, &body)?;
    let endpoint = DdmEndpoint::parse(&endpoint)
        .map_err(|e| DeviceError(StatusCode::NOT_FOUND, e.to_string()))?;
    ddm(&state, &id, endpoint, body.to_vec()).await
}

async fn ddm(
    state: &AppState,
    id: &str,
    endpoint: DdmEndpoint,
    data: Vec<u8>,
) -> Result<Response, DeviceError> {
    let json = |value: &dyn erased::Json| {
        ([("content-type", "application/json")], value.to_json()).into_response()
    };
    match endpoint {
        DdmEndpoint::Tokens | DdmEndpoint::DeclarationItems => {
            let declarations = state.db.declarations_for(id).await.map_err(internal)?;
            let items =
                DeclarationItemsResponse::from_declarations(&declarations).map_err(internal)?;
            Ok(if endpoint == DdmEndpoint::Tokens {
                json(&items.tokens_response(state.clock.now()))
            } else {
                json(&items)
            })
        }
        DdmEndpoint::Declaration {
            category,
            identifier,
        } => {
            let assigned = state.db.declarations_for(id).await.map_err(internal)?;
            match assigned
                .into_iter()
                .find(|d| d.identifier == identifier && d.category().ok() == Some(category))
            {
                Some(declaration) => Ok(json(&declaration)),
                None => Err(DeviceError(
                    StatusCode::NOT_FOUND,
                    format!("declaration {identifier:?} is not assigned"),
                )),
            }
        }
        DdmEndpoint::Status => {
            if data.len() > state.limits.max_status_bytes {
                return Err(DeviceError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "status report too large".into(),
                ));
            }
            let data = Bytes::from(data);
            let report = parse_off_workers(&data, StatusReport::parse).await?;
            let data = data.to_vec();
            state
                .writer
                .submit(id.to_owned(), data, report)
                .await
                .map_err(internal)?;
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// JSON bodies of several types through one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}
