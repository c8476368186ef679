//! The `emit` capability: a plugin publishes new events. The host validates them, gives each an
//! id and records the instance as its source; the invocation's outcome carries them to the router.

use wasmtime::component::{HasData, Linker};

use crate::bindings::emit::{self as wit, Host};
use crate::bindings::types::{Error, Event, NewEvent};
use crate::capabilities::{Capability, Scope};
use crate::clock::now_ms;
use crate::limits::hold_output;
use crate::tape::play_publish;

/// The longest event kind accepted.
const MAX_KIND_LEN: usize = 128;
/// The most attributes one event may carry.
const MAX_ATTRIBUTES: usize = 64;
/// The longest attribute name.
const MAX_ATTRIBUTE_NAME_LEN: usize = 128;
/// The attribute that names the event whose delivery produced an event.
pub const CAUSED_BY: &str = "caused_by";
/// The attribute that carries a job's callback URL.
pub const CALLBACK_URL: &str = "callback_url";
/// Attribute names the host writes itself (an event's lineage, a job's callback URL); a plugin
/// may not set them, or it could forge another event's place in a trace or aim a signed callback.
pub const HOST_ATTRIBUTES: [&str; 2] = [CAUSED_BY, CALLBACK_URL];
/// The prefix of attribute names reserved for the host.
pub const HOST_ATTRIBUTE_PREFIX: &str = "plugboard.";

/// How many bytes an event makes the host hold: its payload, kind, content type and
/// attributes, which is what `max_event_bytes` and `max_output_bytes` count.
pub(crate) fn size_of(
    kind: &str,
    content_type: &str,
    payload: &[u8],
    attributes: &[(String, String)],
) -> usize {
    attributes.iter().fold(kind.len() + content_type.len() + payload.len(), |n, (k, v)| n + k.len() + v.len())
}

/// Checks a plugin-made event and turns it into a stored-shape [`Event`] from `source`.
///
/// The same rules apply to events a plugin emits, returns from `handle` or makes from a webhook,
/// so a plugin cannot smuggle a malformed event through any door.
pub(crate) fn accept(source: &str, max_bytes: u32, event: NewEvent) -> Result<Event, String> {
    let kind_ok = !event.kind.is_empty()
        && event.kind.len() <= MAX_KIND_LEN
        && event.kind.bytes().all(|b| b.is_ascii_graphic());
    if !kind_ok {
        return Err(format!(
            "event kind {:?} must be 1 to {MAX_KIND_LEN} printable ASCII characters without spaces",
            event.kind.chars().take(MAX_KIND_LEN).collect::<String>()
        ));
    }
    if event.content_type.is_empty() || event.content_type.len() > 255 {
        return Err(format!("event `{}` needs a content type of at most 255 bytes", event.kind));
    }
    if event.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!("event `{}` has more than {MAX_ATTRIBUTES} attributes", event.kind));
    }
    let size = size_of(&event.kind, &event.content_type, &event.payload, &event.attributes);
    if size > max_bytes as usize {
        return Err(format!(
            "event `{}` is {size} bytes (payload {}, with kind, content type and attributes), over \
             the limit of {max_bytes}",
            event.kind,
            event.payload.len()
        ));
    }
    for (name, _) in &event.attributes {
        let well_formed = !name.is_empty()
            && name.len() <= MAX_ATTRIBUTE_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed {
            return Err(format!(
                "event `{}`: attribute name {:?} must be 1 to {MAX_ATTRIBUTE_NAME_LEN} printable ASCII \
                 characters without spaces",
                event.kind,
                name.chars().take(MAX_ATTRIBUTE_NAME_LEN).collect::<String>()
            ));
        }
        if HOST_ATTRIBUTES.contains(&name.as_str()) || name.starts_with(HOST_ATTRIBUTE_PREFIX) {
            return Err(format!(
                "event `{}`: attribute `{name}` is the host's to set (reserved: {}, {HOST_ATTRIBUTE_PREFIX}*)",
                event.kind,
                HOST_ATTRIBUTES.join(", ")
            ));
        }
    }
    Ok(Event {
        id: new_event_id(),
        source: source.to_owned(),
        kind: event.kind,
        occurred_at_ms: event.occurred_at_ms.unwrap_or_else(now_ms),
        content_type: event.content_type,
        payload: event.payload,
        attributes: event.attributes,
    })
}

/// A new, time-ordered event id (UUIDv7), so ids sort by creation time in the event log.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What an `emit` call sees: the caller, the events the invocation emitted so far, and the
/// bytes it has made the host hold.
pub struct EmitView<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) emitted: &'a mut Vec<Event>,
    pub(crate) held: &'a mut usize,
}

impl<'a> EmitView<'a> {
    /// The view for the caller `scope`: accepted events go to `emitted`, their bytes count in
    /// `held` (against `max_output_bytes`).
    pub fn new(scope: Scope<'a>, emitted: &'a mut Vec<Event>, held: &'a mut usize) -> Self {
        EmitView { scope, emitted, held }
    }
}

struct HasEmit;

impl HasData for HasEmit {
    type Data<'a> = EmitView<'a>;
}

/// Adds the `emit` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> EmitView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasEmit>(linker, get)
}

impl Host for EmitView<'_> {
    async fn publish(&mut self, event: NewEvent) -> Result<String, Error> {
        let Some(tape) = self.scope.tape else { return self.publish_live(event) };
        let published = event.clone();
        let answer = play_publish(tape, &published, || self.publish_live(event));
        // Replaying, the id is the recorded one: the event must carry the id the plugin saw.
        if let (Ok(id), Some(last)) = (&answer, self.emitted.last_mut()) {
            last.id.clone_from(id);
        }
        answer
    }
}

impl EmitView<'_> {
    fn publish_live(&mut self, event: NewEvent) -> Result<String, Error> {
        self.scope.require(Capability::Emit)?;
        let limits = self.scope.limits;
        if self.emitted.len() >= limits.max_events as usize {
            return Err(Error::InvalidInput(format!(
                "an invocation may emit at most {} events",
                limits.max_events
            )));
        }
        let event =
            accept(self.scope.instance, limits.max_event_bytes, event).map_err(Error::InvalidInput)?;
        let size = size_of(&event.kind, &event.content_type, &event.payload, &event.attributes);
        hold_output(self.held, size, limits).map_err(Error::InvalidInput)?;
        let id = event.id.clone();
        self.emitted.push(event);
        Ok(id)
    }
}
