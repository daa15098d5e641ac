//! MDM check-in messages (property lists) and the `DeclarativeManagement` command.
//!
//! Schema: apple/device-management `mdm/checkin/*.yaml` and `mdm/commands/declarativemanagement.yaml`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::declaration::DeclarationCategory;

/// Why a check-in body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckinError {
    /// Not a property list, or not a dictionary.
    #[error("check-in body is not a property list dictionary: {0}")]
    NotAPlist(String),
    /// `MessageType` is absent.
    #[error("check-in message has no MessageType")]
    MissingMessageType,
    /// A `MessageType` this server does not handle.
    #[error("check-in MessageType {0:?} is not supported")]
    UnsupportedMessageType(String),
    /// A message whose keys do not match its type.
    #[error("{message_type} check-in is malformed: {reason}")]
    Malformed {
        /// The message type.
        message_type: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No UDID and no EnrollmentID: the sender cannot be identified.
    #[error("{0} check-in carries neither UDID nor EnrollmentID")]
    NoEnrollment(&'static str),
    /// A DeclarativeManagement `Endpoint` the protocol does not define.
    #[error(
        "DeclarativeManagement Endpoint {0:?} is not one of tokens, declaration-items, status, declaration/<type>/<identifier>"
    )]
    UnknownEndpoint(String),
    /// Arrays and dictionaries nested deeper than [`MAX_PLIST_DEPTH`].
    #[error(
        "the property list nests arrays and dictionaries deeper than {0} levels; no Apple message does"
    )]
    TooDeep(usize),
    /// More elements than the body's size allows without shared references (a binary plist
    /// that refers to one collection many times expands without bound).
    #[error(
        "the property list expands to more than {0} elements (a binary plist reusing collections?)"
    )]
    TooManyElements(usize),
}

/// The deepest nesting of arrays and dictionaries read from a device. Apple's check-in messages
/// and command reports nest four or five levels; parsing is recursive, so the bound keeps a
/// hostile body from overflowing the stack.
pub const MAX_PLIST_DEPTH: usize = 64;

/// Checks a property list's shape with the plist crate's own (iterative) event reader before
/// any recursive parse: nesting within [`MAX_PLIST_DEPTH`], and no more elements than twice
/// its bytes (at least 1,024).
pub fn check_plist_shape(bytes: &[u8]) -> Result<(), CheckinError> {
    use plist::stream::Event;
    let max_events = bytes.len().saturating_mul(2).max(1024);
    let mut depth = 0usize;
    for (count, event) in plist::stream::Reader::new(std::io::Cursor::new(bytes)).enumerate() {
        if count >= max_events {
            return Err(CheckinError::TooManyElements(max_events));
        }
        match event.map_err(|error| CheckinError::NotAPlist(error.to_string()))? {
            Event::StartArray(_) | Event::StartDictionary(_) => {
                depth += 1;
                if depth > MAX_PLIST_DEPTH {
                    return Err(CheckinError::TooDeep(MAX_PLIST_DEPTH));
                }
            }
            Event::EndCollection => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Every property list a device or server sends is read through here: shape first, then serde.
fn read_plist<T: DeserializeOwned>(
    bytes: &[u8],
    message_type: &'static str,
) -> Result<T, CheckinError> {
    check_plist_shape(bytes)?;
    plist::from_bytes(bytes).map_err(|error| CheckinError::Malformed {
        message_type,
        reason: error.to_string(),
    })
}

/// The keys that identify the sending enrollment, common to every check-in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentKeys {
    /// The device's UDID (device enrollments).
    #[serde(rename = "UDID", default, skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    /// The enrollment id (user enrollments).
    #[serde(
        rename = "EnrollmentID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enrollment_id: Option<String>,
    /// The user channel's user, on macOS user enrollments.
    #[serde(
        rename = "EnrollmentUserID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enrollment_user_id: Option<String>,
    /// The user channel's GUID (macOS, Shared iPad).
    #[serde(rename = "UserID", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user channel's short name.
    #[serde(
        rename = "UserShortName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_short_name: Option<String>,
}

impl EnrollmentKeys {
    /// The device channel id: the UDID, or the EnrollmentID of a user enrollment.
    pub fn device_id(&self) -> Option<&str> {
        self.udid
            .as_deref()
            .or(self.enrollment_id.as_deref())
            .filter(|id| !id.is_empty())
    }

    /// The enrollment id as NanoMDM forms it: the device id, plus `:<user>` on a user channel.
    pub fn enrollment_id(&self) -> Option<String> {
        let device = self.device_id()?;
        Some(
            match self
                .user_id
                .as_deref()
                .or(self.enrollment_user_id.as_deref())
            {
                Some(user) if !user.is_empty() => format!("{device}:{user}"),
                _ => device.to_owned(),
            },
        )
    }
}

/// `Authenticate`: the first message of an enrollment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authenticate {
    /// Who sends it (read from and written to the same dictionary).
    #[serde(skip)]
    pub enrollment: EnrollmentKeys,
    /// The push topic.
    #[serde(rename = "Topic")]
    pub topic: String,
    /// The OS version.
    #[serde(rename = "OSVersion", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// The OS build.
    #[serde(
        rename = "BuildVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub build_version: Option<String>,
    /// The model identifier (`iPhone15,2`, `MacBookPro18,3`).
    #[serde(
        rename = "ProductName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub product_name: Option<String>,
    /// The serial number.
    #[serde(
        rename = "SerialNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub serial_number: Option<String>,
    /// The device's name.
    #[serde(
        rename = "DeviceName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_name: Option<String>,
    /// The model (`MacBookPro18,3`).
    #[serde(rename = "Model", default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model name (`MacBook Pro`).
    #[serde(rename = "ModelName", default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The IMEI of a cellular device.
    #[serde(rename = "IMEI", default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    /// The MEID of a cellular device.
    #[serde(rename = "MEID", default, skip_serializing_if = "Option::is_none")]
    pub meid: Option<String>,
}

/// `TokenUpdate`: the push token and push magic to wake the enrollment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUpdate {
    /// Who sends it (read from and written to the same dictionary).
    #[serde(skip)]
    pub enrollment: EnrollmentKeys,
    /// The push topic.
    #[serde(rename = "Topic")]
    pub topic: String,
    /// The APNs device token.
    #[serde(rename = "Token", with = "serde_bytes")]
    pub token: Vec<u8>,
    /// The value to send as `{"mdm": PushMagic}`.
    #[serde(rename = "PushMagic")]
    pub push_magic: String,
    /// The unlock token (never logged).
    #[serde(
        rename = "UnlockToken",
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_bytes"
    )]
    pub unlock_token: Option<Vec<u8>>,
    /// True while Setup Assistant waits for the server's `DeviceConfigured`.
    #[serde(
        rename = "AwaitingConfiguration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub awaiting_configuration: Option<bool>,
    /// True when the user is not at the console (macOS user channel).
    #[serde(
        rename = "NotOnConsole",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_on_console: Option<bool>,
}

/// `CheckOut`: the enrollment is leaving management.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOut {
    /// Who sends it (read from and written to the same dictionary).
    #[serde(skip)]
    pub enrollment: EnrollmentKeys,
    /// The push topic.
    #[serde(rename = "Topic", default)]
    pub topic: String,
}

/// `DeclarativeManagement` check-in: one DDM request carried over the check-in channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarativeManagementCheckin {
    /// Who sends it (read from and written to the same dictionary).
    #[serde(skip)]
    pub enrollment: EnrollmentKeys,
    /// `tokens`, `declaration-items`, `status` or `declaration/<type>/<identifier>`.
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    /// For `status`, the JSON status report.
    #[serde(
        rename = "Data",
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_bytes"
    )]
    pub data: Option<Vec<u8>>,
}

impl DeclarativeManagementCheckin {
    /// The endpoint, parsed.
    pub fn parsed_endpoint(&self) -> Result<DdmEndpoint, CheckinError> {
        DdmEndpoint::parse(&self.endpoint)
    }
}

/// A DDM request path, as carried in `Endpoint` or as the path of NanoMDM's forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdmEndpoint {
    /// `tokens`
    Tokens,
    /// `declaration-items`
    DeclarationItems,
    /// `status`
    Status,
    /// `declaration/<type>/<identifier>`
    Declaration {
        /// The category segment.
        category: DeclarationCategory,
        /// The identifier (which may itself contain `/`).
        identifier: String,
    },
}

impl DdmEndpoint {
    /// Parses an endpoint, with or without a leading `/`.
    pub fn parse(text: &str) -> Result<Self, CheckinError> {
        let path = text.strip_prefix('/').unwrap_or(text);
        match path {
            "tokens" => return Ok(Self::Tokens),
            "declaration-items" => return Ok(Self::DeclarationItems),
            "status" => return Ok(Self::Status),
            _ => {}
        }
        path.strip_prefix("declaration/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(segment, identifier)| {
                let category = DeclarationCategory::from_path_segment(segment)?;
                (!identifier.is_empty()).then(|| Self::Declaration {
                    category,
                    identifier: identifier.to_owned(),
                })
            })
            .ok_or_else(|| CheckinError::UnknownEndpoint(text.to_owned()))
    }
}

/// `SetBootstrapToken`: the Mac escrows its bootstrap token; absent or empty means remove it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBootstrapToken {
    /// Who sends it (read from and written to the same dictionary).
    #[serde(skip)]
    pub enrollment: EnrollmentKeys,
    /// The token.
    #[serde(
        rename = "BootstrapToken",
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_bytes"
    )]
    pub bootstrap_token: Option<Vec<u8>>,
    /// True while Setup Assistant waits.
    #[serde(
        rename = "AwaitingConfiguration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub awaiting_configuration: Option<bool>,
}

/// `GetBootstrapToken`: a Mac with Apple silicon asks for its token before installing an update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBootstrapToken {
    /// Who sends it (read from and written to the same dictionary).
    #[serde(skip)]
    pub enrollment: EnrollmentKeys,
    /// True while Setup Assistant waits.
    #[serde(
        rename = "AwaitingConfiguration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub awaiting_configuration: Option<bool>,
}

/// The server's answer to `GetBootstrapToken`. No token: the key is omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBootstrapTokenResponse {
    /// The escrowed token.
    #[serde(
        rename = "BootstrapToken",
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_bytes"
    )]
    pub bootstrap_token: Option<Vec<u8>>,
}

/// A check-in message, by `MessageType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckinMessage {
    /// `Authenticate`
    Authenticate(Authenticate),
    /// `TokenUpdate`
    TokenUpdate(TokenUpdate),
    /// `CheckOut`
    CheckOut(CheckOut),
    /// `DeclarativeManagement`
    DeclarativeManagement(DeclarativeManagementCheckin),
    /// `SetBootstrapToken`
    SetBootstrapToken(SetBootstrapToken),
    /// `GetBootstrapToken`
    GetBootstrapToken(GetBootstrapToken),
}

impl CheckinMessage {
    /// Parses an XML or binary property list.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckinError> {
        check_plist_shape(bytes)?;
        let value: plist::Value =
            plist::from_bytes(bytes).map_err(|error| CheckinError::NotAPlist(error.to_string()))?;
        let Some(dictionary) = value.as_dictionary() else {
            return Err(CheckinError::NotAPlist(
                "the top level is not a dictionary".into(),
            ));
        };
        let message_type = dictionary
            .get("MessageType")
            .and_then(plist::Value::as_string)
            .ok_or(CheckinError::MissingMessageType)?;
        let malformed = |message_type| {
            move |error: plist::Error| CheckinError::Malformed {
                message_type,
                reason: error.to_string(),
            }
        };
        // The enrollment keys sit beside each message's own keys in one dictionary; they are
        // read separately because plist's serde support cannot read a flattened struct.
        let enrollment: EnrollmentKeys =
            plist::from_value(&value).map_err(malformed("check-in"))?;
        fn typed<T: DeserializeOwned>(
            message_type: &'static str,
            value: &plist::Value,
        ) -> Result<T, CheckinError> {
            plist::from_value(value).map_err(|error| CheckinError::Malformed {
                message_type,
                reason: error.to_string(),
            })
        }
        let mut message = match message_type {
            "Authenticate" => Self::Authenticate(typed("Authenticate", &value)?),
            "TokenUpdate" => Self::TokenUpdate(typed("TokenUpdate", &value)?),
            "CheckOut" => Self::CheckOut(typed("CheckOut", &value)?),
            "DeclarativeManagement" => {
                Self::DeclarativeManagement(typed("DeclarativeManagement", &value)?)
            }
            "SetBootstrapToken" => Self::SetBootstrapToken(typed("SetBootstrapToken", &value)?),
            "GetBootstrapToken" => Self::GetBootstrapToken(typed("GetBootstrapToken", &value)?),
            other => return Err(CheckinError::UnsupportedMessageType(other.to_owned())),
        };
        *message.enrollment_mut() = enrollment;
        if message.enrollment().device_id().is_none() {
            return Err(CheckinError::NoEnrollment(message.message_type()));
        }
        Ok(message)
    }

    /// The `MessageType`.
    pub fn message_type(&self) -> &'static str {
        match self {
            Self::Authenticate(_) => "Authenticate",
            Self::TokenUpdate(_) => "TokenUpdate",
            Self::CheckOut(_) => "CheckOut",
            Self::DeclarativeManagement(_) => "DeclarativeManagement",
            Self::SetBootstrapToken(_) => "SetBootstrapToken",
            Self::GetBootstrapToken(_) => "GetBootstrapToken",
        }
    }

    /// Who sent it.
    pub fn enrollment(&self) -> &EnrollmentKeys {
        match self {
            Self::Authenticate(m) => &m.enrollment,
            Self::TokenUpdate(m) => &m.enrollment,
            Self::CheckOut(m) => &m.enrollment,
            Self::DeclarativeManagement(m) => &m.enrollment,
            Self::SetBootstrapToken(m) => &m.enrollment,
            Self::GetBootstrapToken(m) => &m.enrollment,
        }
    }

    fn enrollment_mut(&mut self) -> &mut EnrollmentKeys {
        match self {
            Self::Authenticate(m) => &mut m.enrollment,
            Self::TokenUpdate(m) => &mut m.enrollment,
            Self::CheckOut(m) => &mut m.enrollment,
            Self::DeclarativeManagement(m) => &mut m.enrollment,
            Self::SetBootstrapToken(m) => &mut m.enrollment,
            Self::GetBootstrapToken(m) => &mut m.enrollment,
        }
    }

    /// The message as an XML property list, as a device sends it.
    pub fn to_xml(&self) -> Vec<u8> {
        let body = match self {
            Self::Authenticate(m) => plist::to_value(m),
            Self::TokenUpdate(m) => plist::to_value(m),
            Self::CheckOut(m) => plist::to_value(m),
            Self::DeclarativeManagement(m) => plist::to_value(m),
            Self::SetBootstrapToken(m) => plist::to_value(m),
            Self::GetBootstrapToken(m) => plist::to_value(m),
        };
        let mut dictionary = plist::Dictionary::new();
        dictionary.insert("MessageType".into(), self.message_type().into());
        for part in [plist::to_value(self.enrollment()), body] {
            if let Ok(plist::Value::Dictionary(entries)) = part {
                dictionary.extend(entries);
            }
        }
        to_xml(&plist::Value::Dictionary(dictionary))
    }
}

/// The `DeclarativeManagement` MDM command: enables DDM, or triggers a sync. With `Data` (a
/// tokens response) the device skips the `tokens` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarativeManagementCommand {
    /// The command.
    #[serde(rename = "Command")]
    pub command: DeclarativeManagementRequest,
    /// The command's UUID.
    #[serde(rename = "CommandUUID")]
    pub command_uuid: String,
}

/// The command's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarativeManagementRequest {
    /// Always `DeclarativeManagement`.
    #[serde(rename = "RequestType")]
    pub request_type: String,
    /// The JSON of a tokens response.
    #[serde(
        rename = "Data",
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_bytes"
    )]
    pub data: Option<Vec<u8>>,
}

impl DeclarativeManagementCommand {
    /// A command carrying the given tokens-response JSON, or none.
    pub fn new(command_uuid: impl Into<String>, tokens_json: Option<Vec<u8>>) -> Self {
        Self {
            command: DeclarativeManagementRequest {
                request_type: "DeclarativeManagement".into(),
                data: tokens_json,
            },
            command_uuid: command_uuid.into(),
        }
    }

    /// The command as an XML property list.
    pub fn to_xml(&self) -> Vec<u8> {
        to_xml(self)
    }

    /// Parses a command property list, checking its `RequestType`.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckinError> {
        let command: Self = read_plist(bytes, "DeclarativeManagement command")?;
        if command.command.request_type != "DeclarativeManagement" {
            return Err(CheckinError::Malformed {
                message_type: "DeclarativeManagement command",
                reason: format!(
                    "RequestType is {:?}, not DeclarativeManagement",
                    command.command.request_type
                ),
            });
        }
        Ok(command)
    }
}

/// The `DeviceInformation` MDM command, asking the device the queries Updraft reads: its name
/// and time zone (a deadline is on the device's own clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInformationCommand {
    /// The command.
    #[serde(rename = "Command")]
    pub command: DeviceInformationRequest,
    /// The command's UUID.
    #[serde(rename = "CommandUUID")]
    pub command_uuid: String,
}

/// The command's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInformationRequest {
    /// Always `DeviceInformation`.
    #[serde(rename = "RequestType")]
    pub request_type: String,
    /// The names of the values asked for.
    #[serde(rename = "Queries")]
    pub queries: Vec<String>,
}

impl DeviceInformationCommand {
    /// The queries Updraft asks.
    pub const QUERIES: [&'static str; 2] = ["DeviceName", "TimeZone"];

    /// A command asking [`Self::QUERIES`].
    pub fn new(command_uuid: impl Into<String>) -> Self {
        Self {
            command: DeviceInformationRequest {
                request_type: "DeviceInformation".into(),
                queries: Self::QUERIES.iter().map(|q| (*q).to_owned()).collect(),
            },
            command_uuid: command_uuid.into(),
        }
    }

    /// The command as an XML property list.
    pub fn to_xml(&self) -> Vec<u8> {
        to_xml(self)
    }
}

/// Any MDM command as a device reads it: what it asks, and the parts Updraft's commands carry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncomingCommand {
    /// The command.
    #[serde(rename = "Command")]
    pub command: IncomingRequest,
    /// The command's UUID.
    #[serde(rename = "CommandUUID")]
    pub command_uuid: String,
}

/// The body of an [`IncomingCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncomingRequest {
    /// `DeclarativeManagement`, `DeviceInformation`, ...
    #[serde(rename = "RequestType")]
    pub request_type: String,
    /// `DeclarativeManagement`'s tokens response.
    #[serde(rename = "Data", default, with = "optional_bytes")]
    pub data: Option<Vec<u8>>,
    /// `DeviceInformation`'s queries.
    #[serde(rename = "Queries", default)]
    pub queries: Vec<String>,
}

impl IncomingCommand {
    /// Parses a command property list.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckinError> {
        read_plist(bytes, "MDM command")
    }
}

/// The answers of a `DeviceInformation` command Updraft reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponses {
    /// The device's name.
    #[serde(
        rename = "DeviceName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_name: Option<String>,
    /// The device's IANA time zone.
    #[serde(rename = "TimeZone", default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// A command connection's `Status`: the device is idle, or this is how a command went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandStatus {
    /// Nothing to report; the device asks for the next command.
    #[default]
    Idle,
    /// The command ran.
    Acknowledged,
    /// The command failed (`ErrorChain` says why).
    Error,
    /// The command was not a valid command.
    CommandFormatError,
    /// The device cannot run it now (locked, busy): send it again at its next `Idle`.
    NotNow,
}

impl CommandStatus {
    /// Apple's name, as stored with the command's result.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Acknowledged => "Acknowledged",
            Self::Error => "Error",
            Self::CommandFormatError => "CommandFormatError",
            Self::NotNow => "NotNow",
        }
    }
}

/// What a device sends on the command connection: `Idle`, or a command's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReport {
    /// The device (device channel).
    #[serde(rename = "UDID", default, skip_serializing_if = "Option::is_none")]
    pub udid: Option<String>,
    /// The enrollment (User Enrollment).
    #[serde(
        rename = "EnrollmentID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enrollment_id: Option<String>,
    /// The user (user channel).
    #[serde(rename = "UserID", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Idle, or the command's result.
    #[serde(rename = "Status")]
    pub status: CommandStatus,
    /// The command answered (absent at `Idle`).
    #[serde(
        rename = "CommandUUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub command_uuid: Option<String>,
    /// `DeviceInformation`'s answers.
    #[serde(
        rename = "QueryResponses",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub query_responses: Option<QueryResponses>,
}

impl CommandReport {
    /// `Idle` from a device.
    pub fn idle(udid: &str) -> Self {
        Self {
            udid: Some(udid.to_owned()),
            status: CommandStatus::Idle,
            ..Self::default()
        }
    }

    /// A result of a command.
    pub fn result(udid: &str, status: CommandStatus, command_uuid: &str) -> Self {
        Self {
            udid: Some(udid.to_owned()),
            status,
            command_uuid: Some(command_uuid.to_owned()),
            ..Self::default()
        }
    }

    /// Parses a report; it must name its enrollment and carry a `Status`.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckinError> {
        let report: Self = read_plist(bytes, "command report")?;
        if report.udid.is_none() && report.enrollment_id.is_none() {
            return Err(CheckinError::Malformed {
                message_type: "command report",
                reason: "it carries neither UDID nor EnrollmentID".into(),
            });
        }
        Ok(report)
    }

    /// The device sending it (UDID, or EnrollmentID on a user enrollment), whichever channel.
    pub fn device_id(&self) -> &str {
        self.udid
            .as_deref()
            .or(self.enrollment_id.as_deref())
            .unwrap_or_default()
    }

    /// The enrollment id as the server keys it: the device, plus `:<user>` on a user channel.
    pub fn enrollment(&self) -> String {
        let device = self
            .udid
            .as_deref()
            .or(self.enrollment_id.as_deref())
            .unwrap_or_default();
        match &self.user_id {
            Some(user) => format!("{device}:{user}"),
            None => device.to_owned(),
        }
    }

    /// The report as an XML property list.
    pub fn to_xml(&self) -> Vec<u8> {
        to_xml(self)
    }
}

impl GetBootstrapTokenResponse {
    /// The response as an XML property list.
    pub fn to_xml(&self) -> Vec<u8> {
        to_xml(self)
    }

    /// Parses a response; an empty body (NanoMDM's answer when there is no token) means none.
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckinError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let mut response: Self = read_plist(bytes, "GetBootstrapToken response")?;
        if response.bootstrap_token.as_ref().is_some_and(Vec::is_empty) {
            response.bootstrap_token = None;
        }
        Ok(response)
    }
}

fn to_xml<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Serializing these plain structs cannot fail: every field is a string, bool or data.
    let _ = plist::to_writer_xml(&mut out, value);
    out
}

/// `Option<Vec<u8>>` as plist `<data>`.
mod optional_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_bytes(bytes),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(deserializer)?.map(|buf| buf.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_or_without_slash() {
        assert_eq!(DdmEndpoint::parse("tokens").unwrap(), DdmEndpoint::Tokens);
        assert_eq!(DdmEndpoint::parse("/status").unwrap(), DdmEndpoint::Status);
        assert_eq!(
            DdmEndpoint::parse("declaration/configuration/com.example/su").unwrap(),
            DdmEndpoint::Declaration {
                category: DeclarationCategory::Configuration,
                identifier: "com.example/su".into()
            }
        );
        for bad in ["declaration/bogus/x", "declaration/activation/", "nope", ""] {
            assert!(DdmEndpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn declarative_management_round_trips_with_data() {
        let message = CheckinMessage::DeclarativeManagement(DeclarativeManagementCheckin {
            enrollment: EnrollmentKeys {
                udid: Some("0000FE00-5FADE97DCBBBEDA5".into()),
                ..Default::default()
            },
            endpoint: "status".into(),
            data: Some(br#"{"StatusItems":{},"Errors":[]}"#.to_vec()),
        });
        let xml = message.to_xml();
        let text = String::from_utf8(xml.clone()).unwrap();
        assert!(text.contains("<key>MessageType</key>"), "{text}");
        assert!(text.contains("<data>"), "{text}");
        assert_eq!(CheckinMessage::parse(&xml).unwrap(), message);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(matches!(
            CheckinMessage::parse(b"not a plist"),
            Err(CheckinError::NotAPlist(_))
        ));
        let no_type = br#"<?xml version="1.0"?><plist version="1.0"><dict><key>UDID</key><string>x</string></dict></plist>"#;
        assert_eq!(
            CheckinMessage::parse(no_type),
            Err(CheckinError::MissingMessageType)
        );
        let unknown = br#"<plist version="1.0"><dict><key>MessageType</key><string>Bogus</string></dict></plist>"#;
        assert!(matches!(
            CheckinMessage::parse(unknown),
            Err(CheckinError::UnsupportedMessageType(_))
        ));
        let anonymous = br#"<plist version="1.0"><dict><key>MessageType</key><string>CheckOut</string><key>Topic</key><string>t</string></dict></plist>"#;
        assert_eq!(
            CheckinMessage::parse(anonymous),
            Err(CheckinError::NoEnrollment("CheckOut"))
        );
    }

    #[test]
    fn bootstrap_token_response_empty_means_none() {
        assert_eq!(
            GetBootstrapTokenResponse::parse(b"").unwrap(),
            GetBootstrapTokenResponse::default()
        );
        let with = GetBootstrapTokenResponse {
            bootstrap_token: Some(vec![1, 2, 3]),
        };
        assert_eq!(
            GetBootstrapTokenResponse::parse(&with.to_xml()).unwrap(),
            with
        );
        let empty = GetBootstrapTokenResponse {
            bootstrap_token: Some(vec![]),
        };
        assert_eq!(
            GetBootstrapTokenResponse::parse(&empty.to_xml())
                .unwrap()
                .bootstrap_token,
            None
        );
    }

    #[test]
    fn a_device_information_answer_round_trips_and_a_report_names_its_enrollment() {
        let command = DeviceInformationCommand::new("C2");
        let incoming = IncomingCommand::parse(&command.to_xml()).unwrap();
        assert_eq!(incoming.command.request_type, "DeviceInformation");
        assert_eq!(incoming.command.queries, ["DeviceName", "TimeZone"]);
        let mut report = CommandReport::result("U1", CommandStatus::Acknowledged, "C2");
        report.query_responses = Some(QueryResponses {
            device_name: Some("Ana's Mac".into()),
            time_zone: Some("Europe/Paris".into()),
        });
        assert_eq!(CommandReport::parse(&report.to_xml()).unwrap(), report);
        let mut user = CommandReport::idle("U1");
        user.user_id = Some("501".into());
        assert_eq!(user.enrollment(), "U1:501");
        let error = CommandReport::parse(&plist_of(&[("Status", "Idle")])).unwrap_err();
        assert!(error.to_string().contains("neither UDID"), "{error}");
        let error =
            CommandReport::parse(&plist_of(&[("UDID", "U1"), ("Status", "Done")])).unwrap_err();
        assert!(error.to_string().contains("`Done`"), "{error}");
    }

    fn plist_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut dictionary = plist::Dictionary::new();
        for (key, value) in entries {
            dictionary.insert((*key).into(), plist::Value::String((*value).into()));
        }
        let mut out = Vec::new();
        plist::to_writer_xml(&mut out, &plist::Value::Dictionary(dictionary)).unwrap();
        out
    }

    #[test]
    fn command_carries_tokens_as_data() {
        let command =
            DeclarativeManagementCommand::new("C1", Some(b"{\"SyncTokens\":{}}".to_vec()));
        let xml = command.to_xml();
        assert_eq!(DeclarativeManagementCommand::parse(&xml).unwrap(), command);
    }
}
