//! Sparklines drawn on the server as inline SVG: a polyline over a series
//! of counts, scaled to its own maximum. Presentation attributes only (no
//! `style`), so the strict Content-Security-Policy holds.

use std::fmt::Write;

const WIDTH: f64 = 180.0;
const HEIGHT: f64 = 28.0;

/// The SVG of `values` (oldest first), described for screen readers by
/// `label`. Counts are numbers and the label is escaped, so nothing from a
/// request or the database lands in the markup unescaped.
pub fn sparkline(values: &[i64], label: &str) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        WIDTH / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut points = String::new();
    for (i, value) in values.iter().enumerate() {
        let x = i as f64 * step;
        let y = HEIGHT - 1.0 - (*value).max(0) as f64 / max * (HEIGHT - 2.0);
        if i > 0 {
            points.push(' ');
        }
        let _ = write!(points, "{x:.1},{y:.1}");
    }
    let label = maud::html! { (label) }.into_string();
    format!(
        "<svg class=\"spark\" role=\"img\" aria-label=\"{label}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" preserveAspectRatio=\"none\">\
         <title>{label}</title>\
         <line x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" stroke=\"#ccd\" stroke-width=\"1\"/>\
         <polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{points}\"/></svg>",
        base = HEIGHT - 1.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_value_reaches_the_top() {
        let svg = sparkline(&[0, 5, 10], "refreshes");
        assert!(
            svg.contains("points=\"0.0,27.0 90.0,14.0 180.0,1.0\""),
            "{svg}"
        );
        assert!(svg.contains("aria-label=\"refreshes\""));
        assert!(!svg.contains("style"));
    }

    #[test]
    fn empty_and_flat_series_draw() {
        assert!(sparkline(&[], "x").contains("points=\"\""));
        assert!(sparkline(&[0, 0], "x").contains("points=\"0.0,27.0 180.0,27.0\""));
    }

    #[test]
    fn labels_are_escaped() {
        let svg = sparkline(&[1], "<script>\"");
        assert!(!svg.contains("<script>"));
    }
}
