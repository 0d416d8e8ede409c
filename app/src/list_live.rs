//! The sessions list in the browser: follows the server's change stream (`/api/v1/sessions/changes`), ticks
//! active rows' durations, and applies filter changes as client-side navigations.

#[cfg(feature = "hydrate")]
pub use browser::{apply, follow};

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::RefCell;

    use leptos::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    use web_sys::{EventSource, HtmlFormElement, HtmlInputElement, HtmlSelectElement};

    struct Following {
        source: EventSource,
        _on_change: Closure<dyn FnMut(web_sys::Event)>,
    }

    thread_local! {
        static FOLLOWING: RefCell<Option<Following>> = const { RefCell::new(None) };
    }

    /// From now until the page goes: each change event bumps `changes` (the page reads its data again), and
    /// active rows' durations tick every second.
    pub fn follow(changes: RwSignal<u64>) {
        let ticking = set_interval_with_handle(tick_durations, std::time::Duration::from_secs(1));
        // The browser reconnects an event source by itself; after a reconnect the list may have missed
        // changes, which the `open` event covers by reading again.
        let source = match EventSource::new("/api/v1/sessions/changes") {
            Ok(s) => s,
            Err(_) => return,
        };
        let on_change = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| changes.update(|n| *n += 1));
        for event in ["sessions", "resync"] {
            let _ = source.add_event_listener_with_callback(event, on_change.as_ref().unchecked_ref());
        }
        let first_open = std::rc::Rc::new(std::cell::Cell::new(true));
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            if !first_open.replace(false) {
                changes.update(|n| *n += 1);
            }
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        on_open.forget();
        FOLLOWING.with(|f| *f.borrow_mut() = Some(Following { source, _on_change: on_change }));
        on_cleanup(move || {
            if let Ok(handle) = ticking {
                handle.clear();
            }
            FOLLOWING.with(|f| {
                if let Some(following) = f.borrow_mut().take() {
                    following.source.close();
                }
            });
        });
    }

    /// Active rows' duration cells say their duration as of the answer (`data-duration-ms`); each counts on from
    /// when the browser first saw it (`data-seen-at`), so rows of newer answers start from their own time.
    fn tick_durations() {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
        let Ok(cells) = document.query_selector_all("[data-duration-ms]") else { return };
        let now = js_sys::Date::now() as u64;
        for i in 0..cells.length() {
            let Some(cell) = cells.item(i).and_then(|n| n.dyn_into::<web_sys::Element>().ok()) else { continue };
            // Integers only: parsing floats would bring their parser into the bundle.
            let number = |name: &str| cell.get_attribute(name).and_then(|v| v.parse::<u64>().ok());
            let Some(base) = number("data-duration-ms") else { continue };
            let seen = number("data-seen-at").unwrap_or_else(|| {
                let _ = cell.set_attribute("data-seen-at", &now.to_string());
                now
            });
            cell.set_text_content(Some(&crate::format::duration_ms(base + now.saturating_sub(seen))));
        }
    }

    fn field(form: &HtmlFormElement, id: &str) -> Option<String> {
        let el = form.owner_document()?.get_element_by_id(id)?;
        if let Some(select) = el.dyn_ref::<HtmlSelectElement>() {
            return Some(select.value());
        }
        el.dyn_ref::<HtmlInputElement>().map(|input| input.value())
    }

    fn clear(form: &HtmlFormElement, id: &str) {
        let input = form.owner_document().and_then(|d| d.get_element_by_id(id));
        if let Some(input) = input.as_ref().and_then(|i| i.dyn_ref::<HtmlInputElement>()) {
            input.set_value("");
        }
    }

    /// A filter changed (`is_change`) or the form was submitted: the URL to navigate to inside the app.
    /// Picking a named range clears a custom one, and picking a custom time sets the range to custom; a change
    /// of filters starts again at the first page.
    pub fn apply(ev: &web_sys::Event, is_change: bool) -> Option<String> {
        let form = ev.current_target().and_then(|t| t.dyn_into::<HtmlFormElement>().ok())?;
        let changed = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()).map(|e| e.id());
        match changed.as_deref() {
            Some("f-range") if field(&form, "f-range").as_deref() != Some("custom") => {
                clear(&form, "f-since");
                clear(&form, "f-until");
            }
            Some("f-since" | "f-until") => {
                let range = form.owner_document().and_then(|d| d.get_element_by_id("f-range"));
                if let Some(select) = range.as_ref().and_then(|r| r.dyn_ref::<HtmlSelectElement>()) {
                    select.set_value("custom");
                }
            }
            _ => {}
        }
        // A custom range with no time yet waits for one.
        if is_change
            && field(&form, "f-range").as_deref() == Some("custom")
            && field(&form, "f-since").unwrap_or_default().is_empty()
            && field(&form, "f-until").unwrap_or_default().is_empty()
        {
            return None;
        }
        let mut query = String::new();
        for (name, id) in [
            ("fleet", "f-fleet"),
            ("machine", "f-machine"),
            ("user", "f-user"),
            ("state", "f-state"),
            ("range", "f-range"),
            ("since", "f-since"),
            ("until", "f-until"),
        ] {
            let mut value = field(&form, id).unwrap_or_default();
            // A custom range is implied by its times; `datetime-local` gives minutes, the URL says UTC.
            if value.is_empty() || name == "range" && value == "custom" {
                continue;
            }
            if (name == "since" || name == "until") && value.len() == 16 {
                value.push_str(":00Z");
            }
            let value = js_sys::encode_uri_component(&value).as_string().unwrap_or_default();
            query.push_str(&format!("{}{name}={value}", if query.is_empty() { "" } else { "&" }));
        }
        ev.prevent_default();
        Some(crate::pages::sessions_href(&query))
    }
}
