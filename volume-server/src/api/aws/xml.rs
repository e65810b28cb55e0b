//! The XML of Query-protocol responses: elements written in order, text escaped.

use std::fmt::Display;

/// A response document being written.
#[derive(Debug)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// Starts a document whose root is `<root xmlns="ns">`.
    pub fn new(root: &str, ns: &str) -> Xml {
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(&quick_xml::escape::escape(ns));
        out.push_str("\">");
        Xml { out }
    }

    /// `<name>text</name>`.
    pub fn elem(&mut self, name: &str, text: impl Display) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.out
            .push_str(&quick_xml::escape::escape(text.to_string().as_str()));
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name>text</name>` when `text` is `Some`.
    pub fn opt<T: Display>(&mut self, name: &str, text: Option<T>) -> &mut Self {
        if let Some(t) = text {
            self.elem(name, t);
        }
        self
    }

    /// `<name>`, then what `body` writes, then `</name>`.
    pub fn node(&mut self, name: &str, body: impl FnOnce(&mut Xml)) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        body(self);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// A list: `<name>` holding one `<item>` per element, each written by `each`.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: &[T],
        mut each: impl FnMut(&mut Xml, &T),
    ) -> &mut Self {
        self.node(name, |x| {
            for i in items {
                x.node("item", |x| each(x, i));
            }
        })
    }

    /// A list of values: `<name>` holding one `<item>text</item>` per element.
    pub fn values<T: Display>(&mut self, name: &str, items: &[T]) -> &mut Self {
        self.node(name, |x| {
            for i in items {
                x.elem("item", i);
            }
        })
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        self.out.push_str("</");
        self.out.push_str(root);
        self.out.push('>');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_nested_elements() {
        let mut x = Xml::new("R", "http://ns/");
        x.elem("a", "1 < 2 & \"3\"")
            .opt("b", None::<u32>)
            .list("set", &["x", "y"], |x, v| {
                x.elem("v", v);
            })
            .values("vals", &[1, 2]);
        assert_eq!(
            x.finish("R"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"http://ns/\"><a>1 &lt; 2 &amp; &quot;3&quot;</a><set><item><v>x</v></item><item><v>y</v></item></set><vals><item>1</item><item>2</item></vals></R>"
        );
    }
}
