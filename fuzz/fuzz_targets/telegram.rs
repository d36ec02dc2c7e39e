//! A Telegram update from the webhook's body to what the handler makes of it: the body checked
//! and its `update_id` read (`read_webhook_body`), made storable in jsonb
//! (`without_refused_escapes`), and read back as the handler reads a stored update
//! (`read_update`).
#![no_main]

use avatar_platform::modules::telegram::testkit::{
    read_update, read_webhook_body, without_refused_escapes,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

/// The bot the updates are for (its id and username, as the handler knows them).
const BOT_ID: i64 = 777_000_111;
const BOT_USERNAME: &str = "acme_help_bot";

fuzz_target!(|body: &[u8]| {
    let Ok((_, payload)) = read_webhook_body(body) else {
        return;
    };
    // What is stored: the update as received, less the escapes jsonb refuses.
    let stored = without_refused_escapes(payload.get().to_owned());
    assert!(
        serde_json::from_str::<Box<RawValue>>(&stored).is_ok(),
        "a stored update is no longer JSON: {stored}"
    );
    // jsonb holds no U+0000 and no lone surrogate; serde_json's tree refuses the latter too,
    // so the stored text must read as one. (Numbers beyond f64 are the exception: jsonb's
    // numeric takes them, the tree does not.)
    let stored: Value = match serde_json::from_str(&stored) {
        Ok(value) => value,
        Err(error) if error.to_string().starts_with("number out of range") => return,
        Err(error) => panic!("jsonb would refuse the stored update ({error}): {stored}"),
    };
    assert!(!holds_nul(&stored), "a NUL survived: {stored}");
    let _ = read_update(stored, BOT_ID, BOT_USERNAME);
});

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, field)| key.contains('\0') || holds_nul(field)),
        _ => false,
    }
}
