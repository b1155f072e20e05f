mod common;
#[test]
fn announce_urls_are_found() {
    assert_eq!(
        common::addr_in("listening on http://127.0.0.1:8005/"),
        Some("127.0.0.1:8005".parse().unwrap())
    );
    assert_eq!(
        common::addr_in("Serving HTTP on 127.0.0.1 port 9 (http://127.0.0.1:9/) ..."),
        Some("127.0.0.1:9".parse().unwrap())
    );
    assert_eq!(
        common::addr_in("listening on tcp://[::1]:7"),
        Some("[::1]:7".parse().unwrap())
    );
    assert_eq!(common::addr_in("no url here"), None);
}
