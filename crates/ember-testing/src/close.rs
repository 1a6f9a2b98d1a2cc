//! Tolerance checks. Every comparison in ember's suite goes through these so that an implementation
//! returning NaN or infinity fails instead of passing: `fold(0.0, f32::max)` silently drops NaN and
//! `if e > tol { fail }` lets it through.
//!
//! Each helper panics, naming the side and index, when any input is not finite; the result is then
//! a plain finite `f64` that the caller compares with `<=`.

use std::fmt::Display;

/// `f32` or `f64`: what the suite compares.
pub trait Real: Copy + Into<f64> + Display {}
impl Real for f32 {}
impl Real for f64 {}

/// Panics when any element of `values` is NaN or infinite, naming `what` and the first bad index.
#[track_caller]
pub fn assert_finite<T: Real>(what: &str, values: &[T]) {
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(**v).into().is_finite())
    {
        panic!("{what}: element {i} is {v} (not finite)");
    }
}

/// Largest `|a[i] - b[i]|`; panics on a length mismatch or a non-finite element on either side.
#[track_caller]
pub fn max_abs_diff<T: Real>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    assert_finite("left side", a);
    assert_finite("right side", b);
    a.iter()
        .zip(b)
        .map(|(x, y)| ((*x).into() - (*y).into()).abs())
        .fold(0.0, f64::max)
}

/// Largest `|a[i]|`; panics on a non-finite element.
#[track_caller]
pub fn max_abs<T: Real>(a: &[T]) -> f64 {
    assert_finite("values", a);
    a.iter().map(|x| (*x).into().abs()).fold(0.0, f64::max)
}

/// `max|a - b| / max|b|`: the difference relative to the reference's scale (a reference of zeros
/// makes it the absolute difference over the smallest positive `f64`, i.e. any difference fails).
#[track_caller]
pub fn max_rel_diff<T: Real>(a: &[T], reference: &[T]) -> f64 {
    max_abs_diff(a, reference) / max_abs(reference).max(f64::MIN_POSITIVE)
}

/// `(‖a − b‖₂, ‖reference‖₂)`, for relative L2 errors; panics on a length mismatch or a
/// non-finite element on either side.
#[track_caller]
pub fn l2_diff<T: Real>(a: &[T], reference: &[T]) -> (f64, f64) {
    assert_eq!(a.len(), reference.len(), "compared slices differ in length");
    assert_finite("left side", a);
    assert_finite("right side", reference);
    let d: f64 = a
        .iter()
        .zip(reference)
        .map(|(x, y)| ((*x).into() - (*y).into()).powi(2))
        .sum();
    let n: f64 = reference.iter().map(|y| (*y).into().powi(2)).sum();
    (d.sqrt(), n.sqrt())
}

/// `|a - b| / max(|b|, 1e-12)` for two scalars; panics when either is not finite.
#[track_caller]
pub fn rel(a: f64, reference: f64) -> f64 {
    assert!(
        a.is_finite() && reference.is_finite(),
        "not finite: {a} vs reference {reference}"
    );
    (a - reference).abs() / reference.abs().max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("should panic");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn nan_or_inf_anywhere_fails_naming_the_index() {
        let msg = panics(|| {
            max_abs_diff(&[1.0f32, 2.0], &[1.0, f32::NAN]);
        });
        assert!(msg.contains("right side: element 1"), "{msg}");
        let msg = panics(|| {
            max_abs_diff(&[f64::INFINITY, 2.0], &[1.0, 2.0]);
        });
        assert!(msg.contains("left side: element 0"), "{msg}");
        panics(|| {
            max_abs(&[0.0f32, f32::NEG_INFINITY]);
        });
        panics(|| {
            max_rel_diff(&[f32::NAN], &[1.0]);
        });
        panics(|| {
            rel(f64::NAN, 1.0);
        });
        panics(|| {
            rel(1.0, f64::INFINITY);
        });
        panics(|| assert_finite("x", &[0.0, f32::NAN]));
        panics(|| {
            l2_diff(&[1.0f32], &[f32::NAN]);
        });
    }

    #[test]
    fn finite_inputs_give_the_difference() {
        assert_eq!(max_abs_diff(&[1.0f32, 2.0], &[1.5, 1.0]), 1.0);
        assert_eq!(max_abs(&[-3.0f64, 2.0]), 3.0);
        assert_eq!(max_rel_diff(&[1.0f32, 2.0], &[1.0, 4.0]), 0.5);
        assert_eq!(rel(1.5, 1.0), 0.5);
        assert!(max_rel_diff(&[1e-30f32], &[0.0]) > 1.0);
        assert_eq!(max_abs_diff::<f32>(&[], &[]), 0.0);
        assert_eq!(l2_diff(&[3.0f32, 0.0], &[0.0, 4.0]), (5.0, 4.0));
    }

    #[test]
    fn length_mismatch_fails() {
        panics(|| {
            max_abs_diff(&[1.0f32], &[1.0, 2.0]);
        });
    }
}
