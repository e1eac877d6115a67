//! The shared key cache through MockHost: workers of one Envoy are
//! RequestStages with their own `Shared` (per-worker state) whose MockHosts
//! share one shared-data map.

use super::*;
use crate::filter::background::Job;
use crate::filter::key_cache;

/// Answers the stage's callout in flight.
fn answer(stage: &mut RequestStage<MockHost>, status: &str, body: &str) {
    let token = stage.host.callouts.borrow().len() as u32;
    stage.host.answer_call(status, body);
    stage.on_http_call_response(token, 0, body.len(), 0);
}

/// A chat request of worker `shared` on a host sharing `other`'s data, run
/// to the end of its body (the key check answered when one is made).
fn request(shared: &Rc<Shared>, other: &MockHost) -> RequestStage<MockHost> {
    let host = chat("sk-a", &openai("gpt-4o", "hi")).sharing(other);
    host.now_ns.set(other.now_ns.get());
    let mut stage = RequestStage::new(Rc::clone(shared), host);
    if stage.on_http_request_headers(0, false) == Action::Pause {
        answer(&mut stage, "200", VALID);
    }
    body_end(&mut stage);
    stage
}

fn later(host: &MockHost, ms: u64) {
    host.now_ns.set(host.now_ns.get() + ms * 1_000_000);
}

#[test]
fn workers_share_key_verdicts_and_revocation_bites_within_the_ttl() {
    let (w1, w2) = (shared(json!({})), shared(json!({})));
    let first = authorized(&w1, chat("sk-a", &openai("gpt-4o", "hi")), VALID);
    let hash = crate::core::key::hash("sk-a");
    assert!(first
        .host
        .shared_value(&key_cache::entry_key(&hash))
        .is_some());
    // Worker 2 has never seen the key: no key check.
    let second = request(&w2, &first.host);
    assert!(second.host.callouts.borrow().is_empty());
    assert_eq!(second.host.counter("tollgate.key_cache.shared_hits"), 1);
    assert_eq!(decision(&second.host).unwrap().cluster, "c_openai");
    // An unknown key is refused without growing shared data.
    let stranger = authorized(
        &w2,
        chat("sk-nobody", &openai("gpt-4o", "hi")).sharing(&first.host),
        r#"{"valid": false}"#,
    );
    assert_eq!(stranger.host.reply().unwrap().status, 401);
    assert_eq!(first.host.shared.borrow().values.len(), 1);

    // In the last quarter of the verdict's life the first worker to see it
    // claims the refresh; the other one does not.
    later(&first.host, 8_000);
    let third = request(&w2, &first.host);
    assert!(third.host.callouts.borrow().is_empty());
    let fourth = request(&w1, &first.host);
    assert!(fourth.host.callouts.borrow().is_empty());
    assert_eq!(
        w2.background.borrow().queued().cloned().collect::<Vec<_>>(),
        [Job::KeyRefresh(hash.clone())]
    );
    assert_eq!(w1.background.borrow().queued().count(), 0);

    // The key is revoked; worker 2's root learns it on its refresh.
    let root = MockHost::default().sharing(&first.host);
    root.now_ns.set(first.host.now_ns.get());
    w2.background.borrow_mut().tick(&root, &w2.sidecar);
    assert_eq!(paths(&root), ["/v1/authorize"]);
    let revoked = br#"{"valid": false, "reason": "revoked"}"#;
    w2.background
        .borrow_mut()
        .on_response(&root, 1, Some("200"), revoked);
    // Worker 1's cached verdict expires on time (10 s after the sidecar
    // gave it), and it then reads the refusal from shared data.
    later(&first.host, 1_999);
    let still = request(&w1, &first.host);
    assert!(still.host.replies.borrow().is_empty());
    later(&first.host, 1);
    let mut refused = RequestStage::new(
        Rc::clone(&w1),
        chat("sk-a", &openai("gpt-4o", "hi")).sharing(&first.host),
    );
    refused.host.now_ns.set(first.host.now_ns.get());
    assert_eq!(refused.on_http_request_headers(0, false), Action::Pause);
    assert!(refused.host.callouts.borrow().is_empty());
    let reply = refused.host.reply().unwrap();
    assert_eq!(reply.status, 401);
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
}
