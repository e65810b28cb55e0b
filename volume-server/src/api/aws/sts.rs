//! STS over the Query protocol (API version 2011-06-15): GetCallerIdentity, which the SDKs and
//! tools call to learn the account and key in use.

use super::query::Params;
use super::xml::Xml;
use crate::control::{Account, Ec2Error, ErrorCode};

/// The STS XML namespace.
pub const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    /// The key that signed.
    pub access_key_id: &'a str,
    /// Its account.
    pub account: Account,
}

/// Runs the action; the response document, or the error.
pub fn handle(params: &Params, caller: &Caller<'_>, request_id: &str) -> Result<String, Ec2Error> {
    let action = params.required("Action").map_err(|_| {
        Ec2Error::new(
            ErrorCode::MissingAction,
            "The request must contain the parameter Action.",
        )
    })?;
    match action.as_str() {
        "GetCallerIdentity" => {
            let root = "GetCallerIdentityResponse";
            let mut x = Xml::new(root, NAMESPACE);
            x.node("GetCallerIdentityResult", |x| {
                x.elem("Arn", format!("arn:aws:iam::{}:root", caller.account))
                    .elem("UserId", caller.account.id())
                    .elem("Account", caller.account.id());
            })
            .node("ResponseMetadata", |x| {
                x.elem("RequestId", request_id);
            });
            Ok(x.finish(root))
        }
        other => Err(Ec2Error::new(
            ErrorCode::InvalidAction,
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

/// An STS error document (`ErrorResponse`, with `Type` Sender or Receiver).
pub fn error(e: &Ec2Error, request_id: &str) -> String {
    let root = "ErrorResponse";
    let mut x = Xml::new(root, NAMESPACE);
    x.node("Error", |x| {
        x.elem(
            "Type",
            if e.code.http_status() >= 500 {
                "Receiver"
            } else {
                "Sender"
            },
        )
        .elem("Code", e.code.as_str())
        .elem("Message", &e.message);
    })
    .elem("RequestId", request_id);
    x.finish(root)
}
