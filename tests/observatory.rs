//! The MDN HTTP Observatory, run offline against the default configuration,
//! grades it A+ (issue: "strict by default").
//!
//! The scanner only scans `https://HOST/` on 443 and `http://HOST/` on 80, so
//! this test binds those ports (root, as in CI) and trusts the test CA through
//! `NODE_EXTRA_CA_CERTS`. `PORTCULLIS_OBSERVATORY_DIR` names a directory with
//! `@mdn/mdn-http-observatory` installed; `scripts/test` makes it.
// Test code: a failed assumption is a failed test (workspace lints deny these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::*;

#[test]
fn the_default_configuration_grades_a_plus() {
    let dir = std::env::var("PORTCULLIS_OBSERVATORY_DIR").expect(
        "PORTCULLIS_OBSERVATORY_DIR is not set: run scripts/test, which installs the MDN HTTP Observatory",
    );
    let (pki, up) = (TestPki::new(), Upstream::start());
    // The defaults: no [headers] table at all.
    let cfg = format!(
        "[server]\nhttps = \"127.0.0.1:443\"\nhttp = \"127.0.0.1:80\"\nthreads = 1\n\
         [tls]\nmode = \"files\"\ncert = \"{}\"\nkey = \"{}\"\n\
         [upstreams.app]\naddrs = [\"{}\"]\n[access]\ndefault = \"public\"\n",
        pki.cert_path.display(),
        pki.key_path.display(),
        up.addr()
    );
    let _gw = Gateway::start(&cfg);
    // The package's `mdn-http-observatory-scan` wrapper overwrites
    // NODE_EXTRA_CA_CERTS with its own bundle; run the scanner itself.
    let out = Command::new("node")
        .args([
            "node_modules/@mdn/mdn-http-observatory/src/scan.js",
            "localhost",
        ])
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", &pki.ca_path)
        .output()
        .expect("run the observatory scanner");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scanner failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("scanner JSON");
    let failed: Vec<String> = report["tests"]
        .as_object()
        .map(|tests| {
            tests
                .iter()
                .filter(|(_, t)| t["pass"] == false)
                .map(|(name, t)| format!("{name}: {} ({})", t["result"], t["scoreModifier"]))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "observatory: grade {} score {} failed {failed:?}",
        report["scan"]["grade"], report["scan"]["score"]
    );
    assert_eq!(
        report["scan"]["grade"], "A+",
        "score {}, failing tests: {failed:?}",
        report["scan"]["score"]
    );
}
