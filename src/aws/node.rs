//! A request document in either of the forms AWS tools write it: REST-XML
//! on the wire, or the JSON that `aws ... --cli-input-json` takes. The
//! shapes of [`super::s3control`] read both through this one view, so an
//! existing job definition means the same whichever way it arrives.

use serde_json::Value;

use super::xml::Element;

/// One node of a request document.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// An XML element.
    Xml(&'a Element),
    /// A JSON value.
    Json(&'a Value),
}

impl<'a> Node<'a> {
    /// The member named `name`.
    pub fn get(&self, name: &str) -> Option<Node<'a>> {
        match self {
            Node::Xml(element) => element.child(name).map(Node::Xml),
            Node::Json(value) => value.get(name).filter(|v| !v.is_null()).map(Node::Json),
        }
    }

    /// The node's text: an XML element's text, a JSON scalar as written.
    pub fn text(&self) -> Option<String> {
        match self {
            Node::Xml(element) => Some(element.text.clone()),
            Node::Json(Value::String(text)) => Some(text.clone()),
            Node::Json(Value::Number(number)) => Some(number.to_string()),
            Node::Json(Value::Bool(flag)) => Some(flag.to_string()),
            Node::Json(_) => None,
        }
    }

    /// The items of a list: an XML element's children (`<member>`), a JSON
    /// array's elements.
    pub fn items(&self) -> Vec<Node<'a>> {
        match self {
            Node::Xml(element) => element.children.iter().map(Node::Xml).collect(),
            Node::Json(Value::Array(items)) => items.iter().map(Node::Json).collect(),
            Node::Json(_) => Vec::new(),
        }
    }

    /// The entries of a map: XML `<entry><key/><value/></entry>`, a JSON
    /// object's members.
    pub fn entries(&self) -> Vec<(String, String)> {
        match self {
            Node::Xml(element) => element
                .children
                .iter()
                .filter_map(|entry| {
                    Some((
                        entry.child("key")?.text.clone(),
                        entry.child("value")?.text.clone(),
                    ))
                })
                .collect(),
            Node::Json(Value::Object(members)) => members
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), value)
                })
                .collect(),
            Node::Json(_) => Vec::new(),
        }
    }

    /// The names of the members present.
    pub fn names(&self) -> Vec<String> {
        match self {
            Node::Xml(element) => element.children.iter().map(|c| c.name.clone()).collect(),
            Node::Json(Value::Object(members)) => members
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, _)| name.clone())
                .collect(),
            Node::Json(_) => Vec::new(),
        }
    }
}
