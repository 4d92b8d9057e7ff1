//! The small value languages of the config file: durations and sizes
//! (gateway/src/config/units.rs, included by path so the fuzz build does not
//! pull in the gateway binary's dependencies) and rates
//! (policies/src/ratelimit.rs).
//!
//! Properties:
//! * an accepted duration is positive, and re-reading its canonical spelling
//!   (in seconds and in its largest exact unit) gives it back:
//!   parse(display(x)) == x; likewise for sizes and rates;
//! * surrounding whitespace never changes a result;
//! * a rate the config accepts either builds both limiter kinds or neither
//!   (the in-process and the Redis GCRA agree on what is expressible), and its
//!   `RateLimit-Policy` header names its count and window.
#![no_main]

#[path = "../../gateway/src/config/units.rs"]
#[allow(dead_code)]
mod units;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use policies::ratelimit::{policy_header, MemoryStore, Rate, SharedGcra};

fn display_duration(d: Duration) -> [String; 2] {
    let s = d.as_secs();
    let best = if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    };
    [format!("{s}s"), best]
}

fn display_size(n: u64) -> [String; 2] {
    let best = if n != 0 && n % (1 << 30) == 0 {
        format!("{}GB", n >> 30)
    } else if n != 0 && n % (1 << 20) == 0 {
        format!("{}MB", n >> 20)
    } else if n != 0 && n % (1 << 10) == 0 {
        format!("{}KB", n >> 10)
    } else {
        format!("{n}B")
    };
    [n.to_string(), best]
}

fn display_rate(r: Rate) -> [String; 2] {
    let secs = r.per.as_secs();
    let unit = match secs {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86_400 => "day",
        _ => "",
    };
    let named = if unit.is_empty() {
        format!("{} / {}m", r.count, secs / 60)
    } else {
        format!("{}/{unit}", r.count)
    };
    [format!("{}/{secs}s", r.count), named]
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let padded = format!(" \t{s} ");

    let d = units::parse_duration(s);
    assert_eq!(units::parse_duration(&padded).ok(), d.clone().ok(), "{s:?}");
    if let Ok(d) = d {
        assert!(d.as_secs() > 0 && d.subsec_nanos() == 0, "{s:?}");
        for text in display_duration(d) {
            assert_eq!(units::parse_duration(&text), Ok(d), "{s:?} -> {text:?}");
        }
    }

    let n = units::parse_size(s);
    assert_eq!(units::parse_size(&padded).ok(), n.clone().ok(), "{s:?}");
    if let Ok(n) = n {
        for text in display_size(n) {
            assert_eq!(units::parse_size(&text), Ok(n), "{s:?} -> {text:?}");
        }
    }

    let r = Rate::parse(s);
    assert_eq!(Rate::parse(&padded).ok(), r.clone().ok(), "{s:?}");
    if let Ok(r) = r {
        assert!(r.per.as_secs() > 0 && r.per.subsec_nanos() == 0, "{s:?}");
        for text in display_rate(r) {
            if text.ends_with(" / 0m") || (text.contains(" / ") && r.per.as_secs() % 60 != 0) {
                continue; // not expressible in minutes
            }
            assert_eq!(Rate::parse(&text), Ok(r), "{s:?} -> {text:?}");
        }
        let memory = MemoryStore::new(r);
        let shared = SharedGcra::new(r);
        assert_eq!(
            memory.is_some(),
            shared.is_some(),
            "{s:?}: limiters disagree"
        );
        let header = policy_header("p", r);
        assert!(header.contains(&format!("q={}", r.count)), "{header}");
        assert!(
            header.contains(&format!("w={}", r.window_secs())),
            "{header}"
        );
        if let Some(m) = memory {
            // A fresh key is always allowed at least once.
            assert!(
                matches!(m.check("k"), policies::ratelimit::Outcome::Allowed { .. }),
                "{s:?}"
            );
        }
    }
});
