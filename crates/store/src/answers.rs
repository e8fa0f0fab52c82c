//! How both backends keep an Idempotency-Key's answer: status, headers as a
//! JSON list of pairs, and body, in the `idempotency_keys` row.

use crate::StoredResponse;

/// The headers column of a stored answer.
pub fn headers_json(response: &StoredResponse) -> String {
    serde_json::to_string(&response.headers).expect("strings serialise")
}

/// A stored row's answer: `None` while its request is in flight.
pub fn stored_answer(
    (state, status, headers, body): (String, Option<u16>, Option<String>, Option<Vec<u8>>),
) -> anyhow::Result<Option<StoredResponse>> {
    if state == "in_flight" {
        return Ok(None);
    }
    let headers = serde_json::from_str(headers.as_deref().unwrap_or("[]"))
        .map_err(|e| anyhow::anyhow!("stored headers: {e}"))?;
    Ok(Some(StoredResponse {
        status: status.unwrap_or(500),
        headers,
        body: body.unwrap_or_default(),
    }))
}
