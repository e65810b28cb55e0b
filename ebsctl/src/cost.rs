//! `ebsctl cost`: GetCostAndUsage's answer as Cost Explorer's JSON, as a table (a row per
//! period, a column per group), and as a stacked bar chart: in the terminal (a bar of
//! characters per period, one character per group) and as SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proto::ebs::v1 as pb;
use serde::Serialize;

/// Cost Explorer's reply shape (`ResultsByTime`), for `--output json|text|table`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reply {
    pub results_by_time: Vec<Period>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Period {
    pub time_period: TimePeriod,
    pub total: BTreeMap<String, Amount>,
    pub groups: Vec<Group>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimePeriod {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub keys: Vec<String>,
    pub metrics: BTreeMap<String, Amount>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Amount {
    pub amount: String,
    pub unit: String,
}

fn amounts(m: &std::collections::HashMap<String, pb::MetricValue>) -> BTreeMap<String, Amount> {
    m.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Amount {
                    amount: v.amount.clone(),
                    unit: v.unit.clone(),
                },
            )
        })
        .collect()
}

impl From<&pb::GetCostAndUsageResponse> for Reply {
    fn from(r: &pb::GetCostAndUsageResponse) -> Self {
        Reply {
            results_by_time: r
                .results_by_time
                .iter()
                .map(|p| Period {
                    time_period: TimePeriod {
                        start: p.start.clone(),
                        end: p.end.clone(),
                    },
                    total: amounts(&p.total),
                    groups: p
                        .groups
                        .iter()
                        .map(|g| Group {
                            keys: g.keys.clone(),
                            metrics: amounts(&g.metrics),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The figures to draw: period labels, series names (groups, or `Total`) and each period's
/// amount per series.
pub struct Series {
    pub periods: Vec<String>,
    pub names: Vec<String>,
    /// `values[period][series]`.
    pub values: Vec<Vec<f64>>,
    pub unit: String,
}

impl Series {
    /// `metric` of every period of `r`, by group (series ordered by their total, largest
    /// first).
    pub fn of(r: &pb::GetCostAndUsageResponse, metric: &str) -> Series {
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        let mut unit = String::new();
        let mut rows: Vec<BTreeMap<String, f64>> = Vec::new();
        for p in &r.results_by_time {
            let mut row = BTreeMap::new();
            let mut take = |name: String, v: &pb::MetricValue| {
                let x: f64 = v.amount.parse().unwrap_or(0.0);
                if unit.is_empty() {
                    unit = v.unit.clone();
                }
                *totals.entry(name.clone()).or_default() += x;
                *row.entry(name).or_default() += x;
            };
            if let Some(v) = p.total.get(metric) {
                take("Total".into(), v);
            }
            for g in &p.groups {
                if let Some(v) = g.metrics.get(metric) {
                    take(g.keys.join(" / "), v);
                }
            }
            rows.push(row);
        }
        let mut names: Vec<String> = totals.keys().cloned().collect();
        names.sort_by(|a, b| totals[b].total_cmp(&totals[a]).then(a.cmp(b)));
        Series {
            periods: r.results_by_time.iter().map(|p| p.start.clone()).collect(),
            values: rows
                .iter()
                .map(|row| {
                    names
                        .iter()
                        .map(|n| row.get(n).copied().unwrap_or(0.0))
                        .collect()
                })
                .collect(),
            names,
            unit,
        }
    }

    fn total(&self, period: usize) -> f64 {
        self.values[period].iter().sum()
    }

    fn max_total(&self) -> f64 {
        (0..self.periods.len())
            .map(|p| self.total(p))
            .fold(0.0, f64::max)
    }
}

/// A table: a row per period, a column per series and the period's total.
pub fn table(s: &Series) -> String {
    let mut head = vec!["Period".to_string()];
    head.extend(s.names.iter().cloned());
    head.push(format!("Total ({})", s.unit));
    let mut rows = vec![head];
    for (p, label) in s.periods.iter().enumerate() {
        let mut row = vec![label.clone()];
        row.extend(s.values[p].iter().map(|v| format!("{v:.2}")));
        row.push(format!("{:.2}", s.total(p)));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| {
                if c == 0 {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}

/// Fill characters of the terminal chart's series, in order.
const MARKS: [char; 8] = ['█', '▓', '▒', '░', '#', '=', '+', ':'];

/// A stacked bar per period, `width` characters for the largest total, each series in its own
/// character, and a legend.
pub fn terminal_chart(s: &Series, width: usize) -> String {
    let max = s.max_total();
    let label_w = s.periods.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (p, label) in s.periods.iter().enumerate() {
        let mut bar = String::new();
        // Cumulative rounding, so the segments add up to the bar of the total.
        let mut acc = 0.0;
        let mut drawn = 0usize;
        for (i, v) in s.values[p].iter().enumerate() {
            acc += v;
            let upto = if max > 0.0 {
                (acc / max * width as f64).round() as usize
            } else {
                0
            };
            let n = upto.saturating_sub(drawn);
            bar.extend(std::iter::repeat_n(MARKS[i % MARKS.len()], n));
            drawn += n;
        }
        let _ = writeln!(
            out,
            "{label:<label_w$} |{bar:<width$}| {:.2} {}",
            s.total(p),
            s.unit
        );
    }
    for (i, n) in s.names.iter().enumerate() {
        let _ = writeln!(out, "  {} {n}", MARKS[i % MARKS.len()]);
    }
    out
}

/// Colours of the SVG chart's series, in order.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A stacked bar chart as a standalone SVG document: a bar per period, a segment per series,
/// a scale on the left, the periods below and a legend on the right.
pub fn svg(s: &Series, title: &str) -> String {
    let (left, top, plot_h, bar_w, gap) = (70.0, 40.0, 300.0, 28.0, 10.0);
    let plot_w = (bar_w + gap) * s.periods.len().max(1) as f64 + gap;
    let legend_w = 40.0 + 7.0 * s.names.iter().map(String::len).max().unwrap_or(5) as f64;
    let (w, h) = (left + plot_w + legend_w, top + plot_h + 90.0);
    let max = s.max_total();
    let scale = if max > 0.0 { plot_h / max } else { 0.0 };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    // The scale: five ticks.
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + plot_h - v * scale;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(&s.unit)
    );
    for (p, label) in s.periods.iter().enumerate() {
        let x = left + gap + p as f64 * (bar_w + gap);
        let mut y = top + plot_h;
        for (i, v) in s.values[p].iter().enumerate() {
            let hgt = v * scale;
            if hgt <= 0.0 {
                continue;
            }
            y -= hgt;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w}" height="{hgt:.1}" fill="{}"><title>{}: {v:.4}</title></rect>"#,
                COLOURS[i % COLOURS.len()],
                escape(&s.names[i])
            );
        }
        let (lx, ly) = (x + bar_w / 2.0, top + plot_h + 12.0);
        let _ = writeln!(
            out,
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(45 {lx:.1} {ly:.1})">{}</text>"#,
            escape(label)
        );
    }
    for (i, n) in s.names.iter().enumerate() {
        let (x, y) = (left + plot_w + 12.0, top + 16.0 * i as f64);
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            COLOURS[i % COLOURS.len()],
            x + 14.0,
            y + 9.0,
            escape(n)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(a: &str) -> pb::MetricValue {
        pb::MetricValue {
            amount: a.into(),
            unit: "USD".into(),
        }
    }

    fn reply() -> pb::GetCostAndUsageResponse {
        let group = |k: &str, a: &str| pb::CostGroup {
            keys: vec![k.into()],
            metrics: [("UnblendedCost".to_string(), value(a))].into(),
        };
        pb::GetCostAndUsageResponse {
            results_by_time: vec![
                pb::CostPeriod {
                    start: "2026-12-07".into(),
                    end: "2026-12-08".into(),
                    total: Default::default(),
                    groups: vec![group("EC2 - Other", "1.5"), group("Compute", "3")],
                },
                pb::CostPeriod {
                    start: "2026-12-08".into(),
                    end: "2026-12-09".into(),
                    total: Default::default(),
                    groups: vec![group("EC2 - Other", "0.5")],
                },
            ],
        }
    }

    #[test]
    fn series_table_and_charts() {
        let s = Series::of(&reply(), "UnblendedCost");
        assert_eq!(s.names, ["Compute", "EC2 - Other"], "largest first");
        assert_eq!(s.values, [[3.0, 1.5], [0.0, 0.5]]);
        let t = table(&s);
        assert!(t.contains("Total (USD)"), "{t}");
        assert!(t.lines().nth(2).unwrap().ends_with("4.50"), "{t}");
        let c = terminal_chart(&s, 30);
        let first = c.lines().next().unwrap();
        assert_eq!(first.matches('█').count(), 20, "{c}");
        assert_eq!(first.matches('▓').count(), 10, "{c}");
        assert_eq!(c.lines().nth(1).unwrap().matches('▓').count(), 3, "{c}");
        let svg = svg(&s, "cost & usage");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect").count(),
            3 + 2,
            "three segments and two legend keys"
        );
        assert!(svg.contains("cost &amp; usage"));
    }
}
