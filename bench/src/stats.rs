//! Medians and percentiles of latency samples.

use std::time::Duration;

/// The median of `samples` (the mean of the two middle ones for an even count), or zero.
pub(crate) fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `samples`, or zero.
pub(crate) fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest sample with at least p% of the samples at or below it.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds as a float, for ratios and printing.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds as a float, for printing.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_micros(v)).collect()
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&us(&[5, 1, 3])), Duration::from_micros(3));
        assert_eq!(
            median(&us(&[4, 1, 3, 2])),
            Duration::from_micros(2) + Duration::from_nanos(500)
        );
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn nearest_rank_percentile() {
        let samples = us(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&samples, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&us(&[7]), 99.0), Duration::from_micros(7));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
