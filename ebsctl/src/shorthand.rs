//! The AWS CLI shorthand syntax (`Name=status,Values=a,b`, `Tags=[{Key=k,Value=v}]`), parsed into JSON values.
//!
//! Grammar, as the AWS CLI reads it:
//!
//! ```text
//! parameter  = keyval *("," keyval)
//! keyval     = key "=" [value]              ; an empty value is ""
//! value      = list / struct / csv
//! csv        = scalar *("," scalar)         ; stops before a "," that starts the next key=
//! list       = "[" [item *("," item)] "]"
//! item       = list / struct / scalar
//! struct     = "{" [keyval *("," keyval)] "}"
//! scalar     = 'single quoted' / "double quoted" / unquoted
//! key        = 1*(ALPHA / DIGIT / "-" / "_" / "." / "#" / "/" / ":")
//! ```
//!
//! A csv of one value is a string, of several an array (the caller coerces a string to a list where the
//! parameter is a list). Unquoted values end at `,` (and at `]`/`}` inside brackets), keep inner spaces,
//! lose surrounding ones, and read `\,` as a literal comma. Quoted values take `\\` and `\<quote>`.

use std::fmt;

use serde_json::{Map, Value};

/// Parses one shorthand argument (`Key=a,Value=b`) into a JSON object.
pub fn parse(input: &str) -> Result<Map<String, Value>, ShorthandError> {
    let mut parser = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let map = parser.keyvals()?;
    parser.skip_ws();
    match parser.peek() {
        None => Ok(map),
        Some(_) => Err(parser.expected("','")),
    }
}

/// Where and why a shorthand argument failed to parse; displays like the AWS CLI's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShorthandError {
    /// What the parser wanted and what it found.
    pub message: String,
    /// The whole argument.
    pub input: String,
    /// Character offset of the failure in `input`.
    pub position: usize,
}

impl fmt::Display for ShorthandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caret = " ".repeat(self.position);
        write!(f, "{} for input:\n{}\n{caret}^", self.message, self.input)
    }
}

impl std::error::Error for ShorthandError {}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// How many `[`/`{` enclose the cursor: inside them `]` and `}` end unquoted values.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error(&self, message: String) -> ShorthandError {
        ShorthandError {
            message,
            input: self.chars.iter().collect(),
            position: self.pos,
        }
    }

    fn expected(&self, what: &str) -> ShorthandError {
        let received = match self.peek() {
            Some(c) => format!("'{c}'"),
            None => "'EOF'".to_owned(),
        };
        self.error(format!("Expected: {what}, received: {received}"))
    }

    fn expect(&mut self, c: char) -> Result<(), ShorthandError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(&format!("'{c}'")))
        }
    }

    /// True when `c` ends an unquoted value here.
    fn ends_value(&self, c: char) -> bool {
        c == ',' || (self.depth > 0 && (c == ']' || c == '}'))
    }

    fn is_key_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '#' | '/' | ':')
    }

    /// Whether `key=` starts at the cursor (after spaces), without consuming it.
    fn at_keyval(&self) -> bool {
        let mut i = self.pos;
        let at = |i: usize| self.chars.get(i).copied();
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let start = i;
        while at(i).is_some_and(Self::is_key_char) {
            i += 1;
        }
        if i == start {
            return false;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        at(i) == Some('=')
    }

    /// `keyval *("," keyval)`: stops (without consuming) at anything but a `,`.
    fn keyvals(&mut self) -> Result<Map<String, Value>, ShorthandError> {
        let mut map = Map::new();
        loop {
            self.skip_ws();
            let key_pos = self.pos;
            let key = self.key()?;
            self.expect('=')?;
            let value = self.value()?;
            if map.contains_key(&key) {
                self.pos = key_pos;
                return Err(self.error(format!("Second instance of key \"{key}\"")));
            }
            map.insert(key, value);
            self.skip_ws();
            if self.peek() != Some(',') {
                return Ok(map);
            }
            self.pos += 1;
        }
    }

    fn key(&mut self) -> Result<String, ShorthandError> {
        let start = self.pos;
        while self.peek().is_some_and(Self::is_key_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected("key"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// The value after `key=`.
    fn value(&mut self) -> Result<Value, ShorthandError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(Value::String(String::new())),
            Some(c) if self.ends_value(c) => Ok(Value::String(String::new())),
            Some('[') => self.list(),
            Some('{') => self.structure(),
            Some(_) => self.csv(),
        }
    }

    /// `scalar *("," scalar)`, leaving a `,` that starts the next `key=` (or ends the input) alone.
    fn csv(&mut self) -> Result<Value, ShorthandError> {
        let mut items = vec![self.scalar()?];
        loop {
            self.skip_ws();
            if self.peek() != Some(',') {
                break;
            }
            let comma = self.pos;
            self.pos += 1;
            self.skip_ws();
            let next_is_value = match self.peek() {
                None | Some('[' | '{') => false,
                Some(c) if self.ends_value(c) => false,
                Some(_) => !self.at_keyval(),
            };
            if !next_is_value {
                self.pos = comma;
                break;
            }
            items.push(self.scalar()?);
        }
        Ok(match items.len() {
            1 => items.swap_remove(0),
            _ => Value::Array(items),
        })
    }

    fn list(&mut self) -> Result<Value, ShorthandError> {
        self.expect('[')?;
        self.depth += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            let item = match self.peek() {
                Some('[') => self.list()?,
                Some('{') => self.structure()?,
                _ => self.scalar()?,
            };
            items.push(item);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.expected("',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn structure(&mut self) -> Result<Value, ShorthandError> {
        self.expect('{')?;
        self.depth += 1;
        self.skip_ws();
        let map = if self.peek() == Some('}') {
            Map::new()
        } else {
            self.keyvals()?
        };
        self.expect('}')?;
        self.depth -= 1;
        Ok(Value::Object(map))
    }

    fn scalar(&mut self) -> Result<Value, ShorthandError> {
        self.skip_ws();
        let text = match self.peek() {
            Some(q @ ('\'' | '"')) => self.quoted(q)?,
            _ => self.unquoted()?,
        };
        Ok(Value::String(text))
    }

    fn quoted(&mut self, quote: char) -> Result<String, ShorthandError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return Err(self.error(format!("Unterminated {quote} quote")));
                }
                Some('\\') if matches!(self.chars.get(self.pos + 1), Some(&c) if c == quote || c == '\\') =>
                {
                    out.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn unquoted(&mut self) -> Result<String, ShorthandError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' && self.chars.get(self.pos + 1) == Some(&',') {
                out.push(',');
                self.pos += 2;
                continue;
            }
            if self.ends_value(c) {
                break;
            }
            out.push(c);
            self.pos += 1;
        }
        let trimmed = out.trim_end();
        if trimmed.is_empty() {
            return Err(self.expected("value"));
        }
        Ok(trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(input: &str) -> Value {
        match parse(input) {
            Ok(map) => Value::Object(map),
            Err(e) => panic!("{input:?} failed: {e}"),
        }
    }

    fn err(input: &str) -> ShorthandError {
        match parse(input) {
            Ok(map) => panic!("{input:?} parsed as {map:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(ok("Key=a,Value=b"), json!({"Key": "a", "Value": "b"}));
        assert_eq!(
            ok(" Key = a , Value = b "),
            json!({"Key": "a", "Value": "b"})
        );
        assert_eq!(ok("Key=a"), json!({"Key": "a"}));
    }

    #[test]
    fn empty_values() {
        assert_eq!(ok("Key=a,Value="), json!({"Key": "a", "Value": ""}));
        assert_eq!(ok("Value=,Key=a"), json!({"Value": "", "Key": "a"}));
        assert_eq!(ok("A={K=}"), json!({"A": {"K": ""}}));
    }

    #[test]
    fn csv_lists_stop_at_the_next_key() {
        assert_eq!(
            ok("Name=status,Values=available,in-use"),
            json!({"Name": "status", "Values": ["available", "in-use"]})
        );
        assert_eq!(
            ok("Values=a,b,c,Name=tag:Env"),
            json!({"Values": ["a", "b", "c"], "Name": "tag:Env"})
        );
        assert_eq!(
            ok("Name=tag:Env,Values=prod"),
            json!({"Name": "tag:Env", "Values": "prod"})
        );
    }

    #[test]
    fn values_keep_inner_spaces_and_special_characters() {
        assert_eq!(
            ok("Key=Name,Value=my db volume"),
            json!({"Key": "Name", "Value": "my db volume"})
        );
        assert_eq!(ok("Value=a=b:c/d"), json!({"Value": "a=b:c/d"}));
        assert_eq!(ok(r"Value=a\,b"), json!({"Value": "a,b"}));
        assert_eq!(ok(r"Value=C:\dir"), json!({"Value": r"C:\dir"}));
    }

    #[test]
    fn quoted_values() {
        assert_eq!(ok("Value='a,b=c'"), json!({"Value": "a,b=c"}));
        assert_eq!(ok(r#"Value="say \"hi\"""#), json!({"Value": "say \"hi\""}));
        assert_eq!(ok(r"Value='it\'s'"), json!({"Value": "it's"}));
        assert_eq!(ok("Values='a',\"b\""), json!({"Values": ["a", "b"]}));
        assert_eq!(ok("Value=''"), json!({"Value": ""}));
    }

    #[test]
    fn explicit_lists_and_structs() {
        assert_eq!(
            ok("ResourceType=volume,Tags=[{Key=Name,Value=db},{Key=env,Value=prod}]"),
            json!({"ResourceType": "volume", "Tags": [
                {"Key": "Name", "Value": "db"},
                {"Key": "env", "Value": "prod"},
            ]})
        );
        assert_eq!(ok("A=[x, y ,z]"), json!({"A": ["x", "y", "z"]}));
        assert_eq!(ok("A=[]"), json!({"A": []}));
        assert_eq!(ok("A=[[a,b],[c]]"), json!({"A": [["a", "b"], ["c"]]}));
        assert_eq!(
            ok("A={B={C=d,E=[f]}},G=h"),
            json!({"A": {"B": {"C": "d", "E": ["f"]}}, "G": "h"})
        );
        assert_eq!(ok("A={}"), json!({"A": {}}));
        assert_eq!(
            ok("A={B=x,y,C=z}"),
            json!({"A": {"B": ["x", "y"], "C": "z"}})
        );
    }

    #[test]
    fn nested_structs_as_block_device_mappings_write_them() {
        assert_eq!(
            ok(
                "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-0123456789abcdef0,VolumeSize=8,DeleteOnTermination=true}"
            ),
            json!({"DeviceName": "/dev/xvda", "Ebs": {
                "SnapshotId": "snap-0123456789abcdef0",
                "VolumeSize": "8",
                "DeleteOnTermination": "true",
            }})
        );
        // The struct may come first; keys after it belong to the outer level again.
        assert_eq!(
            ok("Ebs={VolumeSize=8},DeviceName=/dev/sdf,VirtualName=ephemeral0"),
            json!({"Ebs": {"VolumeSize": "8"}, "DeviceName": "/dev/sdf", "VirtualName": "ephemeral0"})
        );
        assert_eq!(
            ok("DeviceName=/dev/sdc,NoDevice="),
            json!({"DeviceName": "/dev/sdc", "NoDevice": ""})
        );
        assert_eq!(
            ok(r#"DeviceName=/dev/sdc,NoDevice="""#),
            json!({"DeviceName": "/dev/sdc", "NoDevice": ""})
        );
        let e = err("DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1,VolumeSize=8");
        assert_eq!(e.message, "Expected: '}', received: 'EOF'");
        let e = err("DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1}}");
        assert_eq!(e.message, "Expected: ',', received: '}'");
    }

    #[test]
    fn closing_brackets_are_plain_characters_outside_brackets() {
        assert_eq!(ok("Value=a]b}"), json!({"Value": "a]b}"}));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = err("Name");
        assert_eq!(e.message, "Expected: '=', received: 'EOF'");
        assert_eq!(e.position, 4);
        assert_eq!(
            e.to_string(),
            "Expected: '=', received: 'EOF' for input:\nName\n    ^"
        );

        assert_eq!(err("").message, "Expected: key, received: 'EOF'");
        assert_eq!(err("=a").message, "Expected: key, received: '='");
        assert_eq!(err("Key=a,").message, "Expected: key, received: 'EOF'");
        assert_eq!(
            err("A=[a,b").message,
            "Expected: ',' or ']', received: 'EOF'"
        );
        assert_eq!(err("A={K=v").message, "Expected: '}', received: 'EOF'");
        assert_eq!(err("A=[a]x").message, "Expected: ',', received: 'x'");
        assert_eq!(err("A=[a,,b]").message, "Expected: value, received: ','");
        assert_eq!(err("A='abc").message, "Unterminated ' quote");
        assert_eq!(err("A='abc").position, 2);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = err("Key=a,Key=b");
        assert_eq!(e.message, "Second instance of key \"Key\"");
        assert_eq!(e.position, 6);
    }
}
