//! Money in JSON, rounded as people read it: sums of dollars to cents, prices per hour
//! to a hundredth of a cent (an instance may cost $0.0052/h). The text and HTML views
//! format with the same rounding; metrics keep full precision.

use serde::Serializer;

/// `x` rounded to `places` decimal places (`+ 0.0` turns -0.0 into 0.0).
pub(crate) fn round_to(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f + 0.0
}

/// Dollars to the cent; `None` for no amount or one that is not a number (for JSON
/// built by hand: `json!` does not see `serialize_with`).
pub(crate) fn cents(v: Option<f64>) -> Option<f64> {
    rounded(v, 2)
}

fn rounded(v: Option<f64>, places: i32) -> Option<f64> {
    v.filter(|x| x.is_finite()).map(|x| round_to(x, places))
}

fn opt_rounded<S: Serializer>(v: &Option<f64>, places: i32, s: S) -> Result<S::Ok, S::Error> {
    match rounded(*v, places) {
        Some(x) => s.serialize_some(&x),
        None => s.serialize_none(),
    }
}

/// Dollars, to the cent (`serialize_with`).
pub(crate) fn opt_cents<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    opt_rounded(v, 2, s)
}

/// Dollars per hour, to a hundredth of a cent (`serialize_with`).
pub(crate) fn opt_price<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    opt_rounded(v, 4, s)
}

/// Dollars per hour (not optional), to a hundredth of a cent (`serialize_with`).
pub(crate) fn price<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    opt_rounded(&Some(*v), 4, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct M {
        #[serde(serialize_with = "opt_price")]
        p: Option<f64>,
        #[serde(serialize_with = "opt_cents")]
        c: Option<f64>,
        #[serde(serialize_with = "opt_cents")]
        t: Option<f64>,
        #[serde(serialize_with = "price")]
        b: f64,
    }

    #[test]
    fn json_money_is_rounded() {
        let m = M {
            p: Some(0.096_000_000_000_000_02),
            c: Some(1.004_999),
            t: Some(-0.001),
            b: 0.0052,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"p":0.096,"c":1.0,"t":0.0,"b":0.0052}"#
        );
        let none = M {
            p: None,
            c: Some(f64::NAN),
            t: Some(2.6751),
            b: 1.0,
        };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"p":null,"c":null,"t":2.68,"b":1.0}"#
        );
    }
}
