//! The glue that `export_connector!` and `export_ai_provider!` call: conversions between the raw
//! component interface and the author's trait.

use crate::{AiProvider, Connector, Error, Event, Metadata, NewEvent, ProviderMetadata};
use crate::{WebhookReply, WebhookRequest, ai};

pub fn assert_connector<T: Connector>() {}

pub fn assert_ai_provider<T: AiProvider>() {}

pub fn metadata<T: Connector>() -> Metadata {
    T::metadata()
}

pub fn action_hints<T: Connector>() -> Vec<crate::ActionHints> {
    T::action_hints()
}

pub fn on_webhook<T: Connector>(request: WebhookRequest) -> Result<WebhookReply, Error> {
    T::on_webhook(request)
}

pub fn handle<T: Connector>(event: Event) -> Result<Vec<NewEvent>, Error> {
    T::handle(event)
}

pub fn invoke<T: Connector>(action: String, input_json: String) -> Result<String, Error> {
    let input: serde_json::Value = serde_json::from_str(&input_json)
        .map_err(|e| Error::InvalidInput(format!("action input is not JSON: {e}")))?;
    let output = T::invoke(&action, input)?;
    serde_json::to_string(&output).map_err(|e| Error::Internal(e.to_string()))
}

pub fn provider_metadata<T: AiProvider>() -> ProviderMetadata {
    T::metadata()
}

pub fn complete<T: AiProvider>(request: ai::ChatRequest) -> Result<ai::ChatResponse, Error> {
    T::complete(request)
}

pub fn complete_with_tools<T: AiProvider>(request: ai::ToolsRequest) -> Result<ai::ToolsResponse, Error> {
    T::complete_with_tools(request)
}
