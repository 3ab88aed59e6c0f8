mod common;
use common::*;

#[test]
fn serves_index_and_has_workers() {
    let s = Srvd::start("smoke", "");
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello\n");
    assert_eq!(s.workers().len(), 2);
}
