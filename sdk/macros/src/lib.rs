//! The export macros of `plugboard-sdk`. Use them through `plugboard_sdk::export_connector!` and
//! `plugboard_sdk::export_ai_provider!`, not directly.
//!
//! Each macro generates the component's export bindings inside the plugin crate (wit-bindgen has
//! to run there so the component-type section names the right world) and reuses the SDK's
//! bindings for every import and shared type, so a plugin author never sees wit-bindgen.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Type, parse_macro_input};

/// The contract: a copy inside this crate, so that it builds on its own when published
/// (`tests/tests/sdk.rs` fails when the copy differs from the workspace's `wit/`).
const WIT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wit");

/// The `with` mappings that point every import and shared type at the SDK's own bindings.
fn shared_bindings() -> proc_macro2::TokenStream {
    quote! {
        "plugboard:connector/types@0.1.0": ::plugboard_sdk::wit::plugboard::connector::types,
        "plugboard:connector/ai-types@0.1.0": ::plugboard_sdk::wit::plugboard::connector::ai_types,
        "plugboard:connector/http@0.1.0": ::plugboard_sdk::wit::plugboard::connector::http,
        "plugboard:connector/kv@0.1.0": ::plugboard_sdk::wit::plugboard::connector::kv,
        "plugboard:connector/log@0.1.0": ::plugboard_sdk::wit::plugboard::connector::log,
        "plugboard:connector/emit@0.1.0": ::plugboard_sdk::wit::plugboard::connector::emit,
        "plugboard:connector/ai@0.1.0": ::plugboard_sdk::wit::plugboard::connector::ai,
        "plugboard:connector/config@0.1.0": ::plugboard_sdk::wit::plugboard::connector::config,
        "plugboard:connector/tool-types@0.1.0": ::plugboard_sdk::wit::plugboard::connector::tool_types,
        "plugboard:connector/ai-tools@0.1.0": ::plugboard_sdk::wit::plugboard::connector::ai_tools,
    }
}

/// Exports a type implementing `plugboard_sdk::Connector` as the component's `connector-with-hints`
/// world: the `connector` world, and the hints its actions declare.
#[proc_macro]
pub fn export_connector(input: TokenStream) -> TokenStream {
    let ty = parse_macro_input!(input as Type);
    let with = shared_bindings();
    // Checked at the author's type, so a missing or wrong impl is reported where it was written.
    let check = quote_spanned! {ty.span()=>
        const _: fn() = || ::plugboard_sdk::__export::assert_connector::<#ty>();
    };
    quote! {
        #check
        #[doc(hidden)]
        type __PlugboardConnector = #ty;
        #[doc(hidden)]
        #[allow(clippy::all, missing_docs)]
        mod __plugboard_connector_export {
            ::plugboard_sdk::__wit_bindgen::generate!({
                path: #WIT_PATH,
                world: "plugboard:connector/connector-with-hints",
                runtime_path: "::plugboard_sdk::__wit_bindgen::rt",
                with: { #with },
            });

            struct Export;

            impl exports::plugboard::connector::plugin::Guest for Export {
                fn metadata() -> ::plugboard_sdk::Metadata {
                    ::plugboard_sdk::__export::metadata::<super::__PlugboardConnector>()
                }
                fn on_webhook(
                    request: ::plugboard_sdk::WebhookRequest,
                ) -> ::core::result::Result<::plugboard_sdk::WebhookReply, ::plugboard_sdk::Error> {
                    ::plugboard_sdk::__export::on_webhook::<super::__PlugboardConnector>(request)
                }
                fn handle(
                    event: ::plugboard_sdk::Event,
                ) -> ::core::result::Result<::std::vec::Vec<::plugboard_sdk::NewEvent>, ::plugboard_sdk::Error> {
                    ::plugboard_sdk::__export::handle::<super::__PlugboardConnector>(event)
                }
                fn invoke(
                    action: ::std::string::String,
                    input_json: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, ::plugboard_sdk::Error> {
                    ::plugboard_sdk::__export::invoke::<super::__PlugboardConnector>(action, input_json)
                }
            }

            impl exports::plugboard::connector::action_hints::Guest for Export {
                fn action_hints() -> ::std::vec::Vec<exports::plugboard::connector::action_hints::Hints> {
                    ::plugboard_sdk::__export::action_hints::<super::__PlugboardConnector>()
                        .into_iter()
                        .map(|h| exports::plugboard::connector::action_hints::Hints {
                            action: h.action,
                            title: h.title,
                            read_only: h.read_only,
                            destructive: h.destructive,
                            idempotent: h.idempotent,
                            open_world: h.open_world,
                            output_schema: h.output_schema.map(|s| s.to_string()),
                        })
                        .collect()
                }
            }

            export!(Export);
        }
    }
    .into()
}

/// Exports a type implementing `plugboard_sdk::AiProvider` as the component's
/// `ai-provider-with-tools` world.
#[proc_macro]
pub fn export_ai_provider(input: TokenStream) -> TokenStream {
    let ty = parse_macro_input!(input as Type);
    let with = shared_bindings();
    let check = quote_spanned! {ty.span()=>
        const _: fn() = || ::plugboard_sdk::__export::assert_ai_provider::<#ty>();
    };
    quote! {
        #check
        #[doc(hidden)]
        type __PlugboardAiProvider = #ty;
        #[doc(hidden)]
        #[allow(clippy::all, missing_docs)]
        mod __plugboard_ai_provider_export {
            ::plugboard_sdk::__wit_bindgen::generate!({
                path: #WIT_PATH,
                world: "plugboard:connector/ai-provider-with-tools",
                runtime_path: "::plugboard_sdk::__wit_bindgen::rt",
                with: { #with },
            });

            struct Export;

            impl exports::plugboard::connector::provider::Guest for Export {
                fn metadata() -> exports::plugboard::connector::provider::ProviderMetadata {
                    let m = ::plugboard_sdk::__export::provider_metadata::<super::__PlugboardAiProvider>();
                    exports::plugboard::connector::provider::ProviderMetadata {
                        name: m.name,
                        version: m.version,
                        description: m.description,
                        default_model: m.default_model,
                        capabilities: m.capabilities,
                    }
                }
                fn complete(
                    request: ::plugboard_sdk::ai::ChatRequest,
                ) -> ::core::result::Result<::plugboard_sdk::ai::ChatResponse, ::plugboard_sdk::Error> {
                    ::plugboard_sdk::__export::complete::<super::__PlugboardAiProvider>(request)
                }
            }

            impl exports::plugboard::connector::provider_tools::Guest for Export {
                fn complete_with_tools(
                    request: ::plugboard_sdk::ai::ToolsRequest,
                ) -> ::core::result::Result<::plugboard_sdk::ai::ToolsResponse, ::plugboard_sdk::Error> {
                    ::plugboard_sdk::__export::complete_with_tools::<super::__PlugboardAiProvider>(request)
                }
            }

            export!(Export);
        }
    }
    .into()
}
