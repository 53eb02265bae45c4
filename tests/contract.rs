//! The contract every function keeps, driven through the binaries.
use cofrap_tests::*;
use serde_json::json;

#[test]
fn smoke() {
    let f = Functions::new();
    let user = unique("smoke");
    let password = f.create_account(&user);
    assert_eq!(password.len(), 24);
    let _ = json!({});
}
