//! Alerts, desktop notices and the audit log.

use crate::view::*;
use crate::{AppError, Session, notices};

impl Session {
    /// The newest alerts, newest first.
    pub async fn alerts(&self, limit: i64) -> Result<Vec<AlertView>, AppError> {
        let alerts = self.store().newest_alerts(limit).await?;
        self.alert_views(alerts).await
    }

    async fn alert_views(
        &self,
        alerts: Vec<updraft_store::Alert>,
    ) -> Result<Vec<AlertView>, AppError> {
        let table = self.table().await?;
        Ok(alerts
            .into_iter()
            .map(|alert| AlertView {
                device_name: alert
                    .enrollment_id
                    .as_deref()
                    .and_then(|id| table.name_of(id))
                    .map(str::to_owned),
                id: alert.id,
                at: alert.at,
                kind: alert.kind,
                device: alert.enrollment_id,
                rollout: alert.rollout_id,
                detail: alert.detail,
            })
            .collect())
    }

    /// Alerts raised after `after`, grouped into desktop notices, and the newest alert's id.
    pub async fn notices_after(&self, after: i64) -> Result<(Vec<notices::Notice>, i64), AppError> {
        let alerts = self.store().alerts_after(after, 100_000).await?;
        let last = alerts.last().map_or(after, |a| a.id);
        let table = self.table().await?;
        let notices = notices::group(&alerts, |id| table.name_of(id).map(str::to_owned));
        Ok((notices, last))
    }

    /// The newest alert's id (notices start after it).
    pub async fn last_alert_id(&self) -> Result<i64, AppError> {
        Ok(self
            .store()
            .newest_alerts(1)
            .await?
            .first()
            .map_or(0, |a| a.id))
    }

    /// The audit log, newest first.
    pub async fn audit(&self, limit: i64) -> Result<Vec<AuditView>, AppError> {
        Ok(self
            .store()
            .audit_log(limit)
            .await?
            .into_iter()
            .map(|e| AuditView {
                at: e.at,
                actor: e.actor,
                action: e.action,
                detail: e.detail,
            })
            .collect())
    }
}
