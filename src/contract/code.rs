//! gRPC status codes by the names the gRPC specification gives them, for
//! metrics labels and messages.

/// A status code's name as gRPC spells it: `FAILED_PRECONDITION` for
/// `Code::FailedPrecondition`.
pub(crate) fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (index, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}
