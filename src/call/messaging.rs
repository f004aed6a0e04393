//! Text messages an agent sends during a call (the `send_message` tool): stored on the call
//! (`call_messages`) before the provider is asked, then updated with its answer. The provider is
//! Twilio's Messages API when Twilio credentials are configured; without them the message is
//! kept with status `not-configured`. From the number the caller called, to the caller.

use std::sync::Arc;

use crate::store::Store;
use crate::transport::control::{ControlError, GatewayControl};

/// What a call needs to send texts.
pub struct Messenger {
    pub control: Arc<GatewayControl>,
    pub store: Store,
    pub call_id: String,
    /// The gateway account of the call (Twilio `accountSid`), if the start message named one.
    pub account: Option<String>,
    /// The caller's number (the message goes there).
    pub caller: String,
    /// The number the caller called (the message comes from it).
    pub number: String,
}

impl Messenger {
    /// Stores and sends `body`; returns the final status (`sent`, `failed`, `not-configured`).
    pub async fn send(&self, body: &str) -> &'static str {
        let id = match self.store.add_call_message(&self.call_id, &self.caller, &self.number, body).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(call_id = %self.call_id, error = %e, "cannot store the text message; not sent");
                return "failed";
            }
        };
        let (status, provider, sid, error) = if self.caller.is_empty() || self.number.is_empty() {
            ("failed", None, None, Some("the call's caller or called number is unknown".to_string()))
        } else {
            match self.control.send_text(self.account.as_deref(), &self.number, &self.caller, body).await {
                Ok(sid) => ("sent", Some("twilio"), Some(sid), None),
                Err(e @ ControlError::NotConfigured(_)) => {
                    ("not-configured", None, None, Some(e.to_string()))
                }
                Err(e) => ("failed", Some("twilio"), None, Some(e.to_string())),
            }
        };
        if let Some(e) = &error {
            tracing::warn!(call_id = %self.call_id, status, error = %e, "text message not sent");
        }
        if let Err(e) =
            self.store.set_message_result(&id, status, provider, sid.as_deref(), error.as_deref()).await
        {
            tracing::error!(call_id = %self.call_id, error = %e, "cannot record the text message's outcome");
        }
        status
    }
}
