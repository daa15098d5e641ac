//! A declaration as an admin `PUT`s it to `/v1/declarations` (JSON). No input panics; a
//! declaration that is accepted has a token that depends on its content only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use updraft_ddm::Declaration;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Declaration>(data);
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let text = |value: Option<Value>| match value {
        Some(Value::String(text)) => text,
        _ => String::new(),
    };
    let declaration_type = text(object.remove("Type"));
    let identifier = text(object.remove("Identifier"));
    let payload = match object.remove("Payload") {
        Some(Value::Object(payload)) => payload,
        _ => Map::new(),
    };
    if let Ok(declaration) = Declaration::from_parts(declaration_type, identifier, payload) {
        let json = serde_json::to_vec(&declaration).expect("a declaration serialises");
        let again: Declaration = serde_json::from_slice(&json).expect("and reads back");
        let rebuilt =
            Declaration::from_parts(again.declaration_type, again.identifier, again.payload)
                .expect("its parts are accepted again");
        assert_eq!(rebuilt.server_token, declaration.server_token);
    }
});
