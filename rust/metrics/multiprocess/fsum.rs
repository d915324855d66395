//! Exact float summation (Shewchuk's algorithm, as CPython's `math.fsum`), so that aggregated
//! counters are the correctly rounded sum of every process's value whatever the order of the
//! files, and the archive keeps dead workers' sums exactly: an exposed counter never goes back by
//! one rounding step when a worker's value moves into the archive.

/// Adds a finite `x` to the finite, non-overlapping `partials` (the inner loop of fsum).
fn add_finite(partials: &mut Vec<f64>, mut x: f64) {
    let mut i = 0;
    for j in 0..partials.len() {
        let mut y = partials[j];
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let hi = x + y;
        let lo = y - (hi - x);
        if lo != 0.0 {
            partials[i] = lo;
            i += 1;
        }
        x = hi;
    }
    partials.truncate(i);
    partials.push(x);
}

/// Adds `x` to `partials`, whose exact sum is a running total (the archive keeps them so a
/// later sum with more values is still exact). A non-finite total is kept as one value.
pub fn add_partial(partials: &mut Vec<f64>, x: f64) {
    if !x.is_finite() || partials.iter().any(|p| !p.is_finite()) {
        let total = fsum(partials.iter().copied().chain([x]));
        partials.clear();
        partials.push(total);
        return;
    }
    add_finite(partials, x);
    if let Some(last) = partials.last().copied()
        && last.is_infinite()
    {
        partials.clear();
        partials.push(last);
    }
}

/// The correctly rounded sum of `values` (NaN when it has NaN or both infinities, the
/// infinity when it has one, and the infinity of the overflowing side on overflow).
#[must_use]
pub fn fsum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    let mut special = 0.0;
    let mut infinities = 0.0;
    let mut has_special = false;
    for x in values {
        if !x.is_finite() {
            if x.is_infinite() {
                infinities += x;
            }
            special += x;
            has_special = true;
            continue;
        }
        add_finite(&mut partials, x);
        if let Some(last) = partials.last()
            && last.is_infinite()
        {
            // Intermediate overflow: the exact sum is out of range on that side.
            return *last;
        }
    }
    if has_special {
        return if infinities.is_nan() {
            f64::NAN
        } else {
            special
        };
    }
    round_partials(&partials)
}

/// The correctly rounded value of the exact sum of finite, non-overlapping `partials`.
#[must_use]
pub fn round_partials(partials: &[f64]) -> f64 {
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    if n == 1 {
        return partials[0];
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        let yr = x - hi;
        if y == yr {
            hi = x;
        }
    }
    hi
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point of these tests
mod tests {
    use super::*;

    #[test]
    fn sums_exactly_in_any_order() {
        let values = [1e16, 1.0, -1e16, 0.1, 0.2, 0.3];
        let forward = fsum(values);
        let backward = fsum(values.iter().rev().copied());
        assert_eq!(forward, backward);
        assert_eq!(forward, 1.6);
        assert_eq!(fsum([0.1; 10]), 1.0);
    }

    #[test]
    fn partials_keep_the_exact_sum() {
        let mut partials = Vec::new();
        for x in [0.1, 0.2, 0.3, 1e-20, 1e20] {
            add_partial(&mut partials, x);
        }
        let mut more = partials.clone();
        add_partial(&mut more, -1e20);
        assert_eq!(round_partials(&more), fsum([0.1, 0.2, 0.3, 1e-20]));
    }

    #[test]
    fn special_values() {
        assert!(fsum([f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert_eq!(fsum([f64::INFINITY, 1.0]), f64::INFINITY);
        assert_eq!(fsum([f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(fsum([]), 0.0);
    }
}
