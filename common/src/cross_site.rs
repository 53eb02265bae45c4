//! Refusing requests that another web site makes a visitor's browser send.
//!
//! Any page on the web can make its visitors' browsers POST to a function: a
//! `text/plain` form or `fetch` needs no CORS preflight, and the function
//! would run (create an account, count failures until a lock). Browsers say
//! where a request comes from, and the classic watchdog passes request
//! headers as `Http_*` environment variables:
//!
//! - `Sec-Fetch-Site` (`Http_Sec_Fetch_Site`, every current browser): only
//!   `same-origin` and `none` (the person typed the address) are accepted;
//!   `same-site` (a sibling subdomain) and `cross-site` are refused;
//! - without it, `Origin` (`Http_Origin`): accepted only when its host and
//!   port are the request's `Host`, or the `X-Forwarded-Host` a proxy in
//!   front (the OpenFaaS gateway) passed on; `Origin: null` is refused.
//!
//! A request with neither header (curl, another service) is not from a
//! browser and is unaffected. [`crate::function::main`] calls [`check`] for
//! every function before it parses the request.

use crate::error::Error;

/// Refuses the request when its headers, read through `header` (an `Http_*`
/// variable's value), mark it as sent by a browser from another site.
pub fn check(header: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    if let Some(site) = header("Http_Sec_Fetch_Site") {
        return match site.trim().to_ascii_lowercase().as_str() {
            "same-origin" | "none" => Ok(()),
            _ => Err(Error::CrossSiteRequest),
        };
    }
    let Some(origin) = header("Http_Origin") else {
        return Ok(());
    };
    // "https://host:port" -> "host:port"; "null" and anything else unusual
    // has no authority and matches nothing.
    let authority = origin
        .trim()
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/').to_ascii_lowercase());
    let same = |name: &str| {
        header(name).is_some_and(|host| {
            authority.as_deref() == Some(host.trim().to_ascii_lowercase().as_str())
        })
    };
    if same("Http_Host") || same("Http_X_Forwarded_Host") {
        Ok(())
    } else {
        Err(Error::CrossSiteRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(headers: &[(&str, &str)]) -> Result<(), &'static str> {
        check(|name| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .map_err(|e| e.code())
    }

    #[test]
    fn browsers_from_elsewhere_are_refused_and_others_are_not() {
        assert_eq!(verdict(&[]), Ok(()));
        assert_eq!(verdict(&[("Http_Host", "gw:8080")]), Ok(()));
        assert_eq!(verdict(&[("Http_Sec_Fetch_Site", "same-origin")]), Ok(()));
        assert_eq!(verdict(&[("Http_Sec_Fetch_Site", "none")]), Ok(()));
        for site in ["cross-site", "same-site", "bogus"] {
            assert_eq!(
                verdict(&[
                    ("Http_Sec_Fetch_Site", site),
                    ("Http_Origin", "http://gw:8080"),
                    ("Http_Host", "gw:8080")
                ]),
                Err("cross_site_request"),
                "{site}"
            );
        }
        let host = ("Http_Host", "gw.example:8080");
        assert_eq!(
            verdict(&[("Http_Origin", "http://GW.example:8080"), host]),
            Ok(())
        );
        assert_eq!(
            verdict(&[("Http_Origin", "https://evil.example"), host]),
            Err("cross_site_request")
        );
        assert_eq!(
            verdict(&[("Http_Origin", "null"), host]),
            Err("cross_site_request")
        );
        assert_eq!(
            verdict(&[("Http_Origin", "http://gw.example:8080.evil"), host]),
            Err("cross_site_request")
        );
        assert_eq!(
            verdict(&[
                ("Http_Origin", "https://gw.example"),
                ("Http_Host", "frontend.openfaas-fn:8080"),
                ("Http_X_Forwarded_Host", "gw.example"),
            ]),
            Ok(())
        );
    }
}
