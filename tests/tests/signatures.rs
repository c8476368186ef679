//! Webhook verification against signatures made by the providers' own SDKs (Slack's
//! `slack-sdk`, Stripe's `stripe`, and `standardwebhooks`, from PyPI; `./dev setup` installs
//! them): what they sign, plugboard accepts; any change to body, time or secret, it refuses.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use plugboard::ingress::verify::{Scheme, Verifier, VerifyError};

/// Runs a Python snippet that prints `header: value` lines.
fn sign_with_python(script: &str) -> HeaderMap {
    let out = Command::new("python3").arg("-c").arg(script).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(": ").expect("header line");
        headers.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    headers
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

const BODY: &str = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","text":"héllo"}}"#;

#[test]
fn slack_sdk_signatures() {
    let ts = now_secs();
    let headers = sign_with_python(&format!(
        "from slack_sdk.signature import SignatureVerifier\n\
         v = SignatureVerifier('slack-signing-secret')\n\
         body = {BODY:?}\n\
         print('x-slack-request-timestamp: {ts}')\n\
         print('x-slack-signature: ' + v.generate_signature(timestamp='{ts}', body=body))"
    ));
    let v = Verifier::new(Scheme::Slack, vec![b"slack-signing-secret".to_vec()]).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(ts);
    assert!(v.verify(&headers, BODY.as_bytes(), now).is_ok());
    assert_eq!(v.verify(&headers, b"{}", now), Err(VerifyError::BadSignature));
    let replayed = v.verify(&headers, BODY.as_bytes(), now + Duration::from_secs(600));
    assert!(matches!(replayed, Err(VerifyError::Stale { .. })), "{replayed:?}");
    let other = Verifier::new(Scheme::Slack, vec![b"another-secret".to_vec()]).unwrap();
    assert_eq!(other.verify(&headers, BODY.as_bytes(), now), Err(VerifyError::BadSignature));
}

#[test]
fn stripe_sdk_signatures_with_rotation() {
    let ts = now_secs();
    // During a rotation Stripe sends one v1 per active secret.
    let headers = sign_with_python(&format!(
        "import stripe\n\
         body = {BODY:?}\n\
         payload = '{ts}.' + body\n\
         s1 = stripe.WebhookSignature._compute_signature(payload, 'whsec_old')\n\
         s2 = stripe.WebhookSignature._compute_signature(payload, 'whsec_new')\n\
         print('stripe-signature: t={ts},v1=' + s1 + ',v1=' + s2 + ',v0=deadbeef')\n\
         stripe.WebhookSignature.verify_header(body, 't={ts},v1=' + s2, 'whsec_new', 300)"
    ));
    let now = UNIX_EPOCH + Duration::from_secs(ts);
    for secret in ["whsec_old", "whsec_new"] {
        let v = Verifier::new(Scheme::Stripe, vec![secret.as_bytes().to_vec()]).unwrap();
        assert!(v.verify(&headers, BODY.as_bytes(), now).is_ok(), "{secret}");
    }
    let v = Verifier::new(Scheme::Stripe, vec![b"whsec_other".to_vec()]).unwrap();
    assert_eq!(v.verify(&headers, BODY.as_bytes(), now), Err(VerifyError::BadSignature));
    let v = Verifier::new(Scheme::Stripe, vec![b"whsec_new".to_vec()]).unwrap();
    assert!(matches!(
        v.verify(&headers, BODY.as_bytes(), now + Duration::from_secs(301)),
        Err(VerifyError::Stale { .. })
    ));
}

#[test]
fn standardwebhooks_sdk_signatures() {
    let ts = now_secs();
    let headers = sign_with_python(&format!(
        "import datetime, standardwebhooks\n\
         secret = 'whsec_' + __import__('base64').b64encode(b'a shared secret of 32 bytes!!!!!').decode()\n\
         wh = standardwebhooks.Webhook(secret)\n\
         body = {BODY:?}\n\
         sig = wh.sign('msg_2KWPBgLlAfxdpx2AI54pPJ85f4W', datetime.datetime.fromtimestamp({ts}, tz=datetime.timezone.utc), body)\n\
         print('webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W')\n\
         print('webhook-timestamp: {ts}')\n\
         print('webhook-signature: ' + sig)\n\
         print('x-secret: ' + secret)"
    ));
    let secret = headers["x-secret"].to_str().unwrap().as_bytes().to_vec();
    let v = Verifier::new(Scheme::StandardWebhooks, vec![secret]).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(ts);
    let verified = v.verify(&headers, BODY.as_bytes(), now).unwrap();
    assert_eq!(verified.delivery_id.as_deref(), Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"));
    assert_eq!(v.verify(&headers, &BODY.as_bytes()[1..], now), Err(VerifyError::BadSignature));
}
