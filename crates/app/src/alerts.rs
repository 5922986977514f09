//! CSRF failures and the alert they can raise.

use domain::{Alert, NewSecurityEvent, SecurityEventKind as Kind};

use crate::{App, AppResult, RequestMeta};

/// The rule raised by more than the threshold of CSRF failures from one IP.
pub const CSRF_ALERT_RULE: &str = "csrf_failures_per_ip";

impl App {
    /// Records a refused state-changing request and, when one IP has failed
    /// more than the threshold within the window, raises one alert. The
    /// counting and the raising happen in the database, so they hold across
    /// several server processes.
    pub async fn record_csrf_failure(
        &self,
        reason: &str,
        user: Option<&domain::User>,
        meta: &RequestMeta,
    ) -> AppResult<Option<Alert>> {
        let now = self.now();
        let mut event =
            NewSecurityEvent::new(Kind::CsrfFailure).detail(serde_json::json!({"reason": reason}));
        if let Some(u) = user {
            event = event.user(u.id, u.username.as_str());
        }
        self.store.append_events(now, &[meta.stamp(event)]).await?;

        let since = now.minus_millis(self.config.csrf_alert_window_ms);
        let failures = self
            .store
            .count_events_from_ip(Kind::CsrfFailure, &meta.ip, since)
            .await?;
        if failures <= self.config.csrf_alert_threshold {
            return Ok(None);
        }
        let detail = serde_json::json!({
            "ip": meta.ip,
            "failures": failures,
            "window_minutes": self.config.csrf_alert_window_ms / 60_000,
            "last_user_agent": meta.user_agent,
            "last_referer": meta.referer,
        })
        .to_string();
        let message = format!(
            "more than {} CSRF failures from one address within {} minutes",
            self.config.csrf_alert_threshold,
            self.config.csrf_alert_window_ms / 60_000
        );
        self.raise_alert(CSRF_ALERT_RULE, &meta.ip, &detail, since, meta, &message)
            .await
    }

    /// Raises an alert for `rule` and `subject` unless one was raised since
    /// `quiet_since` (atomic across servers): stores it with its security
    /// event, logs it at ERROR with `alert=<rule>` and POSTs it to the
    /// webhook.
    pub(crate) async fn raise_alert(
        &self,
        rule: &str,
        subject: &str,
        detail: &str,
        quiet_since: domain::Timestamp,
        meta: &RequestMeta,
        message: &str,
    ) -> AppResult<Option<Alert>> {
        let event = meta.stamp(
            NewSecurityEvent::new(Kind::AlertRaised)
                .detail(serde_json::json!({"rule": rule, "subject": subject})),
        );
        let raised = self
            .store
            .raise_alert(rule, subject, detail, quiet_since, self.now(), &[event])
            .await?;
        if let Some(alert) = &raised {
            tracing::error!(alert = rule, subject, "{message}");
            self.deliver_alert(alert.clone());
        }
        Ok(raised)
    }

    /// POSTs the alert as JSON to the configured webhook, in the background.
    fn deliver_alert(&self, alert: Alert) {
        let Some(url) = self.config.alert_webhook_url.clone() else {
            return;
        };
        let http = self.http.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({
                "id": alert.id,
                "rule": alert.rule,
                "subject": alert.subject,
                "created_at": alert.created_at.millis(),
                "detail": serde_json::from_str::<serde_json::Value>(&alert.detail)
                    .unwrap_or(serde_json::Value::Null),
            });
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = %r.status(), "alert webhook refused the alert"),
                Err(e) => tracing::warn!(
                    error = %e.without_url(),
                    "alert webhook could not be reached"
                ),
            }
        });
    }

    /// Alerts, newest first (admins only).
    pub async fn alerts(&self, actor: crate::Actor<'_>, limit: i64) -> AppResult<Vec<Alert>> {
        actor.require_admin()?;
        Ok(self.store.list_alerts(limit.clamp(1, 500)).await?)
    }
}
