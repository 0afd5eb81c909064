//! The xentrace stream parser against whatever arrives on the channel: the input's first byte picks a
//! chunk-size pattern, the rest is the stream. Checked on every input: no panic, the state stays within
//! its bounds, and feeding the same bytes in chunks gives exactly the counts of feeding them whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry::xen::xentrace::{MAX_DOMAINS, MAX_RECORD, OTHER_OP, TraceParser};

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, stream)) = data.split_first() else { return };
    let mut whole = TraceParser::new();
    whole.feed(stream);
    let _ = whole.finish();

    // Chunk sizes 1..=pattern%64+1, varying, so chunk boundaries fall everywhere.
    let mut chunked = TraceParser::new();
    let (mut at, mut step) = (0usize, usize::from(pattern));
    while at < stream.len() {
        step = step.wrapping_mul(31).wrapping_add(7);
        let n = (step % (usize::from(pattern % 64) + 1) + 1).min(stream.len() - at);
        chunked.feed(&stream[at..at + n]);
        assert!(chunked.held_back() < MAX_RECORD);
        at += n;
    }
    assert_eq!(whole.stats(), chunked.stats());
    assert_eq!(whole.attribution.counts(), chunked.attribution.counts());
    assert_eq!(whole.attribution.records, chunked.attribution.records);
    assert_eq!(whole.attribution.lost_records, chunked.attribution.lost_records);
    assert_eq!(whole.attribution.unknown_domain, chunked.attribution.unknown_domain);
    assert_eq!(whole.stats().bytes, stream.len() as u64);
    assert!(whole.stats().skipped_bytes <= stream.len() as u64);
    let counts = whole.attribution.counts();
    assert!(counts.len() <= MAX_DOMAINS);
    assert!(counts.values().all(|c| c.keys().all(|k| k.op <= OTHER_OP)));
});
