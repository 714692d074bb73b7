//! The "over time" chart, drawn on the server as SVG: bars for views, a line for unique
//! visitors, a tooltip (`<title>`) per bucket. Only numbers and escaped labels go in.

use std::fmt::Write;

/// One bucket: its label, views and visitors.
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) tooltip: String,
    pub(crate) views: u64,
    pub(crate) visitors: u64,
    /// Views of the compared range's bucket at the same position, when comparing.
    pub(crate) compared: Option<u64>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round upper bound for the y axis: 1, 2 or 5 × 10^k at or above `max`.
fn nice_max(max: u64) -> u64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step >= max.max(1) {
                return m * step;
            }
        }
        step *= 10;
    }
}

/// The SVG of `bars`; `format` writes numbers in the page's locale.
pub(crate) fn svg(
    bars: &[Bar],
    format: impl Fn(u64) -> String,
    views: &str,
    visitors: &str,
) -> String {
    const W: f64 = 800.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 24.0;
    const TOP: f64 = 8.0;
    let max = nice_max(
        bars.iter()
            .map(|b| b.views.max(b.visitors).max(b.compared.unwrap_or(0)))
            .max()
            .unwrap_or(0),
    );
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - TOP;
    let slot = plot_w / bars.len().max(1) as f64;
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / max as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
        escape(&format!("{views} / {visitors}"))
    );
    for i in 0..=4 {
        let v = max * i / 4;
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - 8.0,
            LEFT - 6.0,
            y(v) + 4.0,
            escape(&format(v)),
            y = y(v),
        );
    }
    let label_every = (bars.len() / 8).max(1);
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let top = y(b.views);
        let _ = write!(
            out,
            r#"<g><title>{}</title><rect class="bar" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"/></g>"#,
            escape(&b.tooltip),
            x + slot * 0.15,
            slot * 0.7,
            (TOP + plot_h - top).max(0.0),
        );
        if i % label_every == 0 {
            let _ = write!(
                out,
                r#"<text class="axis" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x + slot / 2.0,
                H - 6.0,
                escape(&b.label)
            );
        }
    }
    let points: Vec<String> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{:.1},{:.1}", LEFT + slot * (i as f64 + 0.5), y(b.visitors)))
        .collect();
    let _ = write!(
        out,
        r#"<polyline class="line" points="{}"/>"#,
        points.join(" ")
    );
    // The compared range's views, dashed, over the same positions.
    let compared: Vec<String> = bars
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            b.compared
                .map(|v| format!("{:.1},{:.1}", LEFT + slot * (i as f64 + 0.5), y(v)))
        })
        .collect();
    if !compared.is_empty() {
        let _ = write!(
            out,
            r#"<polyline class="line compared" points="{}"/>"#,
            compared.join(" ")
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(120), 200);
    }

    #[test]
    fn labels_are_escaped() {
        let bars = [Bar {
            label: "<b>".into(),
            tooltip: "\"x\" & y".into(),
            views: 3,
            visitors: 2,
            compared: None,
        }];
        let s = svg(&bars, |n| n.to_string(), "V", "U");
        assert!(s.contains("&lt;b&gt;") && s.contains("&quot;x&quot; &amp; y"));
        assert!(!s.contains("<b>"));
    }
}
