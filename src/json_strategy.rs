//! Property-test inputs shared by every parser of untrusted JSON: any value
//! a peer could send, numbers at and beyond their edges, strings that look
//! like numbers.

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON scalar, weighted towards what breaks readers of numbers.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        "[a-z_]{1,20}".prop_map(Value::from),
        "[-+]?[0-9]{0,30}(\\.[0-9]{0,5})?(e[-+]?[0-9]{1,4})?".prop_map(Value::from),
    ]
}

/// Any JSON value built from `leaf`, with object keys drawn from `key`.
pub fn any_json(
    leaf: impl Strategy<Value = Value> + 'static,
    key: impl Strategy<Value = String> + 'static,
) -> impl Strategy<Value = Value> {
    let key = key.boxed();
    leaf.boxed().prop_recursive(3, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
