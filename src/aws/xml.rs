//! A small XML document model for AWS's REST-XML: elements with a local
//! name, text and children, read with limits on size and depth (requests
//! come from anyone), and a writer that escapes what it writes.

use quick_xml::events::Event;

/// The deepest element nesting a request may have.
const MAX_DEPTH: usize = 32;
/// The most elements a request may have.
const MAX_ELEMENTS: usize = 20_000;

/// One XML element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The local name (namespace prefixes dropped).
    pub name: String,
    /// The text directly inside, entities resolved.
    pub text: String,
    /// The child elements, in order.
    pub children: Vec<Element>,
}

/// Why a document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request body is not well-formed XML: {0}")]
pub struct XmlError(pub String);

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }
}

/// Reads a document into its root element.
pub fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(input).map_err(|_| XmlError("not UTF-8".into()))?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut elements = 0usize;
    let bad = |what: String| XmlError(crate::domain::text::truncated(&what, 200));
    loop {
        let event = reader.read_event().map_err(|e| bad(e.to_string()))?;
        match event {
            Event::Start(start) | Event::Empty(start) if stack.len() >= MAX_DEPTH => {
                let _ = start;
                return Err(bad(format!("nested deeper than {MAX_DEPTH} elements")));
            }
            Event::Start(start) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(bad(format!("more than {MAX_ELEMENTS} elements")));
                }
                stack.push(Element {
                    name: local_name(start.local_name().as_ref()),
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                elements += 1;
                let element = Element {
                    name: local_name(start.local_name().as_ref()),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::End(_) => {
                let Some(mut element) = stack.pop() else {
                    return Err(bad("an end tag without a start".into()));
                };
                // Whitespace between child elements is layout, not text.
                if !element.children.is_empty() {
                    element.text.clear();
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::Text(content) => {
                if let Some(current) = stack.last_mut() {
                    if current.text.len() > 1 << 20 {
                        return Err(bad("a text longer than 1 MiB".into()));
                    }
                    let piece = content.decode().map_err(|e| bad(e.to_string()))?;
                    current.text.push_str(&piece);
                }
            }
            Event::CData(content) => {
                if let Some(current) = stack.last_mut() {
                    let piece = content.decode().map_err(|e| bad(e.to_string()))?;
                    current.text.push_str(&piece);
                }
            }
            Event::GeneralRef(reference) => {
                let Some(current) = stack.last_mut() else {
                    continue;
                };
                if reference.is_char_ref() {
                    match reference.resolve_char_ref() {
                        Ok(Some(c)) => current.text.push(c),
                        _ => return Err(bad("a bad character reference".into())),
                    }
                } else {
                    let name = reference.decode().map_err(|e| bad(e.to_string()))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(value) => current.text.push_str(value),
                        None => return Err(bad(format!("unknown entity &{name};"))),
                    }
                }
            }
            Event::Eof => return Err(bad("the document ends early".into())),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

fn local_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Writes an XML document.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// A document whose root is `root` in AWS's S3 Control namespace.
    pub fn document(root: &str, namespace: &str) -> Writer {
        let mut writer = Writer {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        };
        writer
            .out
            .push_str(&format!("<{root} xmlns=\"{}\">", escape(namespace)));
        writer
    }

    /// Opens an element.
    pub fn start(&mut self, name: &str) -> &mut Writer {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Closes an element.
    pub fn end(&mut self, name: &str) -> &mut Writer {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// An element holding `text`.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Writer {
        self.start(name);
        self.out.push_str(&escape(text));
        self.end(name)
    }

    /// An element holding `text`, when there is some.
    pub fn leaf_if(&mut self, name: &str, text: &str) -> &mut Writer {
        if !text.is_empty() {
            self.leaf(name, text);
        }
        self
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        self.end(root);
        self.out
    }
}

/// `text` with XML's special characters escaped (and characters XML 1.0
/// cannot carry replaced).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if c < ' ' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_read_with_entities_namespaces_and_empty_elements() {
        let root = parse(
            br#"<?xml version="1.0"?><a:Root xmlns:a="urn:x"><Name>x &amp; y&#33;</Name><Empty/><List><member>1</member><member>2</member></List></a:Root>"#,
        )
        .unwrap();
        assert_eq!(root.name, "Root");
        assert_eq!(root.child("Name").unwrap().text, "x & y!");
        assert!(root.child("Empty").is_some());
        assert_eq!(root.child("List").unwrap().children.len(), 2);
    }

    #[test]
    fn hostile_documents_are_refused() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>&foo;</a>").is_err());
        assert!(parse(b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn written_text_is_escaped() {
        let mut writer = Writer::document("R", "urn:x");
        writer.leaf("T", "<a & 'b'>\u{1}");
        let out = writer.finish("R");
        assert!(
            out.contains("<T>&lt;a &amp; &apos;b&apos;&gt;\u{fffd}</T>"),
            "{out}"
        );
        assert_eq!(
            parse(out.as_bytes()).unwrap().child("T").unwrap().text,
            "<a & 'b'>\u{fffd}"
        );
    }
}
