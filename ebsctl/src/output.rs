//! Printing a reply as `--output json|text|table`, the way the AWS CLI does.
//!
//! * `json`: pretty-printed with a 4-space indent, fields in the reply's own order.
//! * `text`: tab-separated. A dict's scalars go on one line (keys sorted); a list of dicts gives one line
//!   per dict, led by the list's name in upper case, with the union of their scalar keys as columns;
//!   nested lists follow on their own lines.
//! * `table`: boxed sections. The first is titled with the operation name; each dict becomes key/value
//!   rows, each nested dict or list element a section titled with its key, indented one level deeper.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::Error as _;
use serde_json::{Map, Value};

/// The `--output` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
    Table,
}

/// Renders `reply` of `operation` (e.g. `DescribeVolumes`, the table's title) in `format`.
pub fn render(
    reply: &impl Serialize,
    format: OutputFormat,
    operation: &str,
) -> serde_json::Result<String> {
    match format {
        OutputFormat::Json => json(reply),
        OutputFormat::Text => Ok(text(&serde_json::to_value(reply)?)),
        OutputFormat::Table => Ok(table(&serde_json::to_value(reply)?, operation)),
    }
}

/// Pretty JSON with a 4-space indent and a final newline.
pub fn json(reply: &impl Serialize) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    reply.serialize(&mut serializer)?;
    out.push(b'\n');
    String::from_utf8(out).map_err(serde_json::Error::custom)
}

/// A scalar as the AWS CLI (Python's `str`) writes it.
fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(k, _)| *k);
    entries
}

// ---------------------------------------------------------------------------------------------------
// text

/// Tab-separated text, as `aws --output text`.
pub fn text(value: &Value) -> String {
    let mut out = String::new();
    text_value(value, None, None, &mut out);
    out
}

fn text_value(value: &Value, name: Option<&str>, columns: Option<&[String]>, out: &mut String) {
    match value {
        Value::Object(map) => text_dict(map, name, columns, out),
        Value::Array(items) => text_list(items, name, out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn text_list(items: &[Value], name: Option<&str>, out: &mut String) {
    if items.iter().any(Value::is_object) {
        let columns = scalar_keys(items);
        for item in items {
            text_value(item, name, Some(&columns), out);
        }
        return;
    }
    let (scalars, nested): (Vec<&Value>, Vec<&Value>) = items.iter().partition(|v| is_scalar(v));
    if !scalars.is_empty() {
        match name {
            Some(name) => {
                for item in &scalars {
                    let _ = writeln!(out, "{}\t{}", name.to_uppercase(), scalar(item));
                }
            }
            None => {
                let line: Vec<String> = scalars.iter().map(|v| scalar(v)).collect();
                let _ = writeln!(out, "{}", line.join("\t"));
            }
        }
    }
    for item in nested {
        text_value(item, name, None, out);
    }
}

/// The sorted union of the scalar keys of the dicts in a list: the columns of its lines.
fn scalar_keys(items: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|map| {
            map.iter()
                .filter(|(_, v)| is_scalar(v))
                .map(|(k, _)| k.clone())
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn text_dict(
    map: &Map<String, Value>,
    name: Option<&str>,
    columns: Option<&[String]>,
    out: &mut String,
) {
    let (mut line, nested): (Vec<String>, Vec<(&String, &Value)>) = match columns {
        Some(columns) => (
            columns
                .iter()
                .map(|k| map.get(k).map(scalar).unwrap_or_default())
                .collect(),
            sorted(map)
                .into_iter()
                .filter(|(k, _)| !columns.contains(k))
                .collect(),
        ),
        None => {
            let (scalars, nested): (Vec<_>, Vec<_>) =
                sorted(map).into_iter().partition(|(_, v)| is_scalar(v));
            (
                scalars.into_iter().map(|(_, v)| scalar(v)).collect(),
                nested,
            )
        }
    };
    if !line.is_empty() {
        if let Some(name) = name {
            line.insert(0, name.to_uppercase());
        }
        let _ = writeln!(out, "{}", line.join("\t"));
    }
    for (key, value) in nested {
        text_value(value, Some(key), None, out);
    }
}

// ---------------------------------------------------------------------------------------------------
// table

/// One boxed block of the table: a title and its rows, `depth` levels in.
#[derive(Debug)]
struct Section {
    depth: usize,
    title: String,
    rows: Vec<Row>,
}

#[derive(Debug)]
enum Row {
    Pair(String, String),
    Single(String),
}

/// An ASCII table, as `aws --output table`, always in key/value layout so it does not depend on the
/// terminal's width.
pub fn table(value: &Value, operation: &str) -> String {
    let mut sections = Vec::new();
    table_sections(value, operation, 0, &mut sections);
    draw(&sections)
}

fn table_sections(value: &Value, title: &str, depth: usize, out: &mut Vec<Section>) {
    match value {
        Value::Object(map) => {
            let (scalars, nested): (Vec<_>, Vec<_>) =
                sorted(map).into_iter().partition(|(_, v)| is_scalar(v));
            out.push(Section {
                depth,
                title: title.to_owned(),
                rows: scalars
                    .into_iter()
                    .map(|(k, v)| Row::Pair(k.clone(), scalar(v)))
                    .collect(),
            });
            for (key, value) in nested {
                table_sections(value, key, depth + 1, out);
            }
        }
        Value::Array(items) => {
            let (scalars, nested): (Vec<&Value>, Vec<&Value>) =
                items.iter().partition(|v| is_scalar(v));
            if !scalars.is_empty() {
                out.push(Section {
                    depth,
                    title: title.to_owned(),
                    rows: scalars
                        .into_iter()
                        .map(|v| Row::Single(scalar(v)))
                        .collect(),
                });
            }
            for item in nested {
                table_sections(item, title, depth, out);
            }
        }
        other => out.push(Section {
            depth,
            title: title.to_owned(),
            rows: vec![Row::Single(scalar(other))],
        }),
    }
}

/// Display width of a cell's text.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cells are written as two spaces, the text, and at least one space of padding.
const CELL_PAD: usize = 3;

fn draw(sections: &[Section]) -> String {
    // The whole table is as wide as its widest section needs.
    let total = sections
        .iter()
        .map(|s| {
            let rails = 2 * (s.depth + 1);
            let (key, value) = key_value_widths(s);
            let rows = if value == 0 { key } else { key + 1 + value };
            rails + (width(&s.title) + 4).max(rows)
        })
        .max();
    let Some(total) = total else {
        return String::new();
    };

    let mut out = String::new();
    push_line(&mut out, "-".repeat(total));
    for (i, section) in sections.iter().enumerate() {
        let d = section.depth;
        let rail = "|".repeat(d + 1);
        let outer = "|".repeat(d);
        let inner = total - 2 * (d + 1);
        let (key_width, value_width) = key_value_widths(section);
        let border = if value_width == 0 {
            format!("{outer}+{}+{outer}", "-".repeat(inner))
        } else {
            let value_width = inner - key_width - 1;
            format!(
                "{outer}+{}+{}+{outer}",
                "-".repeat(key_width),
                "-".repeat(value_width)
            )
        };

        push_line(
            &mut out,
            format!("{rail}{}{rail}", center(&section.title, inner)),
        );
        // The operation's title is always underlined; other titles only when rows follow.
        if i == 0 || !section.rows.is_empty() {
            push_line(&mut out, border.clone());
        }
        if section.rows.is_empty() {
            continue;
        }
        for row in &section.rows {
            let text = match row {
                Row::Pair(k, v) => format!(
                    "{rail}{}|{}{rail}",
                    cell(k, key_width),
                    cell(v, inner - key_width - 1)
                ),
                Row::Single(v) => format!("{rail}{}{rail}", cell(v, inner)),
            };
            push_line(&mut out, text);
        }
        push_line(&mut out, border);
    }
    out
}

fn push_line(out: &mut String, line: String) {
    out.push_str(&line);
    out.push('\n');
}

/// Widths of the key and value columns of a section (0 when it has none).
fn key_value_widths(section: &Section) -> (usize, usize) {
    let mut key = 0;
    let mut value = 0;
    for row in &section.rows {
        match row {
            Row::Pair(k, v) => {
                key = key.max(width(k) + CELL_PAD);
                value = value.max(width(v) + CELL_PAD);
            }
            Row::Single(v) => key = key.max(width(v) + CELL_PAD),
        }
    }
    (key, value)
}

fn cell(text: &str, width_: usize) -> String {
    let pad = width_.saturating_sub(width(text) + 2);
    format!("  {text}{}", " ".repeat(pad))
}

fn center(text: &str, width_: usize) -> String {
    let free = width_.saturating_sub(width(text));
    let left = free / 2;
    format!("{}{text}{}", " ".repeat(left), " ".repeat(free - left))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::shapes::{self, Volumes};

    fn describe_volumes() -> Value {
        let reply = Volumes {
            volumes: vec![shapes::Volume::from(shapes::tests::volume())],
            next_token: None,
        };
        match serde_json::to_value(reply) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn text_lists_dicts_one_line_each_with_sorted_columns() {
        let want = "VOLUMES\tus-east-1a\t2024-05-01T12:00:00.000Z\tFalse\tFalse\t3000\tFalse\t8\t\tin-use\t125\tvol-0123456789abcdef0\tgp3\n\
ATTACHMENTS\t2024-05-01T12:00:01.000Z\tFalse\t/dev/sdf\t3\ti-0123456789abcdef0\tnbd://127.0.0.1:10809/tok\tattached\tvol-0123456789abcdef0\n\
TAGS\tName\tdb\n";
        assert_eq!(text(&describe_volumes()), want);
    }

    #[test]
    fn text_top_level_scalars_and_missing_columns() {
        let value = json!({
            "VolumeId": "vol-1",
            "Size": 8,
            "Items": [{"A": 1, "B": 2}, {"B": 3}],
            "Ids": ["x", "y"],
        });
        assert_eq!(
            text(&value),
            "8\tvol-1\nIDS\tx\nIDS\ty\nITEMS\t1\t2\nITEMS\t\t3\n"
        );
        assert_eq!(text(&json!({"Volumes": []})), "");
    }

    #[test]
    fn table_has_a_title_and_key_value_sections() {
        let value = json!({
            "Hosts": [{
                "InstanceId": "i-1",
                "State": "running",
                "Tags": [{"Key": "Name", "Value": "h"}],
            }],
        });
        let want = "\
----------------------------
|      DescribeHosts       |
+--------------------------+
||         Hosts          ||
|+-------------+----------+|
||  InstanceId |  i-1     ||
||  State      |  running ||
|+-------------+----------+|
|||         Tags         |||
||+--------+-------------+||
|||  Key   |  Name       |||
|||  Value |  h          |||
||+--------+-------------+||
";
        assert_eq!(table(&value, "DescribeHosts"), want);
    }

    #[test]
    fn table_lines_all_have_the_same_width() {
        let drawn = table(&describe_volumes(), "DescribeVolumes");
        let widths: Vec<usize> = drawn.lines().map(width).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{drawn}");
        assert!(
            drawn.contains("||  VolumeId           |  vol-0123456789abcdef0"),
            "{drawn}"
        );
        assert!(drawn.contains("DescribeVolumes"));
    }

    #[test]
    fn table_of_an_empty_list_is_just_the_title() {
        let want = "\
-------------------
|  DescribeHosts  |
+-----------------+
";
        assert_eq!(table(&json!({"Hosts": []}), "DescribeHosts"), want);
    }
}
