//! `application/x-www-form-urlencoded` text: the query string (`?a=1&b=two+words`) and the
//! body of a POSTed HTML form, decoded with the `form_urlencoded` crate (the WHATWG URL
//! standard's parser, as browsers encode): `+` is a space, `%XX` a byte, a `%` not followed
//! by two hex digits stays as it is, empty pairs (`a=1&&b=2`) are skipped, a name without
//! `=` has an empty value, repeated names all come out in order, and bytes that are not
//! UTF-8 after decoding become U+FFFD.
//!
//! ```
//! use ember_fcgi::form;
//!
//! let pairs: Vec<(String, String)> =
//!     form::parse(b"q=caf%C3%A9+au+lait&page=2").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
//! assert_eq!(pairs, [("q".into(), "café au lait".into()), ("page".into(), "2".into())]);
//! assert_eq!(form::value(b"page=2&page=3", "page").as_deref(), Some("2"));
//! ```

use std::borrow::Cow;

use ember_fcgi_core::Params;

/// The decoded `(name, value)` pairs of urlencoded text, in order; made by [`parse`] and
/// [`query_pairs`]. Borrows the input where nothing needed decoding.
#[derive(Clone)]
pub struct Pairs<'a>(form_urlencoded::Parse<'a>);

impl std::fmt::Debug for Pairs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// The pairs of urlencoded `input`: a query string or a form body (see the module doc for
/// the decoding rules).
pub fn parse(input: &[u8]) -> Pairs<'_> {
    Pairs(form_urlencoded::parse(input))
}

/// The value of the first pair named `name` (names compare after decoding).
pub fn value<'a>(input: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    parse(input).find_map(|(k, v)| (k == name).then_some(v))
}

/// The pairs of the request's query string (`QUERY_STRING`; none when it is absent).
///
/// ```
/// use ember_fcgi::prelude::*;
/// use ember_fcgi::form;
///
/// let search = handler_fn(async |req: &mut Request<'_>, res: &mut Response<'_>| {
///     let q = form::query_value(&req.params(), "q").unwrap_or_default().into_owned();
///     res.send_response(200, content_type::TEXT, format!("searching for {q}\n").as_bytes()).await?;
///     Ok(())
/// });
/// # fn takes<H: Handler>(_: &H) {}
/// # takes(&search);
/// ```
pub fn query_pairs<'a>(params: &Params<'a>) -> Pairs<'a> {
    parse(params.query_string().as_bytes())
}

/// The value of the first query string pair named `name`.
pub fn query_value<'a>(params: &Params<'a>, name: &str) -> Option<Cow<'a, str>> {
    value(params.query_string().as_bytes(), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReadToVec, Request, StreamError};

    /// The pairs of `input` as owned strings.
    fn pairs(input: &str) -> Vec<(String, String)> {
        parse(input.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn percent_escapes_and_plus() {
        assert_eq!(pairs("a=1&b=two%20words"), owned(&[("a", "1"), ("b", "two words")]));
        assert_eq!(pairs("b=two+words"), owned(&[("b", "two words")]));
        assert_eq!(pairs("plus=%2B&amp=%26&eq=%3D"), owned(&[("plus", "+"), ("amp", "&"), ("eq", "=")]));
        assert_eq!(pairs("e=%C3%A9&E=%c3%a9"), owned(&[("e", "é"), ("E", "é")]));
        assert_eq!(pairs("na%6De=v"), owned(&[("name", "v")]));
        assert_eq!(pairs("k=a=b"), owned(&[("k", "a=b")]), "only the first = splits");
    }

    #[test]
    fn bad_escapes_stay_as_they_are() {
        assert_eq!(pairs("p=100%&q=%zz&r=%4"), owned(&[("p", "100%"), ("q", "%zz"), ("r", "%4")]));
    }

    #[test]
    fn invalid_utf8_becomes_the_replacement_character() {
        assert_eq!(pairs("x=%FF&y=a%C3"), owned(&[("x", "\u{FFFD}"), ("y", "a\u{FFFD}")]));
        let raw: Vec<(String, String)> =
            parse(b"z=\xFFok").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(raw, owned(&[("z", "\u{FFFD}ok")]));
    }

    #[test]
    fn empty_pairs_and_missing_values() {
        assert_eq!(pairs(""), owned(&[]));
        assert_eq!(pairs("&&a=1&&"), owned(&[("a", "1")]));
        assert_eq!(pairs("flag&x="), owned(&[("flag", ""), ("x", "")]));
        assert_eq!(pairs("=v"), owned(&[("", "v")]));
    }

    #[test]
    fn repeated_names_come_out_in_order_and_value_takes_the_first() {
        assert_eq!(pairs("t=a&u=0&t=b"), owned(&[("t", "a"), ("u", "0"), ("t", "b")]));
        assert_eq!(value(b"t=a&u=0&t=b", "t").as_deref(), Some("a"));
        assert_eq!(value(b"t%20x=1&t+x=2", "t x").as_deref(), Some("1"), "names compare decoded");
        assert_eq!(value(b"t=a", "u"), None);
        assert_eq!(value(b"flag", "flag").as_deref(), Some(""));
    }

    #[test]
    fn nothing_is_copied_when_nothing_needs_decoding() {
        let (k, v) = parse(b"a=plain").next().unwrap();
        assert!(matches!((k, v), (Cow::Borrowed("a"), Cow::Borrowed("plain"))));
    }

    /// What `look` returned for one request through the real engine.
    fn through_engine<T>(
        params: &[(&str, &str)],
        body: &[&[u8]],
        look: impl AsyncFn(&mut Request<'_>) -> T,
    ) -> T {
        use crate::test_engine::{run, script};
        use crate::{Config, handler_fn};
        let seen = std::cell::RefCell::new(None);
        let handler = handler_fn(async |req: &mut Request<'_>, _res: &mut crate::Response<'_>| {
            *seen.borrow_mut() = Some(look(req).await);
            Ok(())
        });
        run(&handler, &script(1, params, body), &Config::default());
        seen.into_inner().expect("the handler ran")
    }

    #[test]
    fn the_query_string_of_a_request() {
        let params = [("QUERY_STRING", "to=%2Fhome&n=1&to=x"), ("REQUEST_METHOD", "GET")];
        let (all, to, missing) = through_engine(&params, &[], async |req: &mut Request<'_>| {
            let params = req.params();
            let all: Vec<(String, String)> =
                query_pairs(&params).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let to = query_value(&params, "to").map(Cow::into_owned);
            (all, to, query_value(&params, "nope").is_none())
        });
        assert_eq!(all, owned(&[("to", "/home"), ("n", "1"), ("to", "x")]));
        assert_eq!(to.as_deref(), Some("/home"));
        assert!(missing);
        let none = through_engine(&[("REQUEST_METHOD", "GET")], &[], async |req: &mut Request<'_>| {
            query_pairs(&req.params()).count()
        });
        assert_eq!(none, 0, "no QUERY_STRING, no pairs");
    }

    #[test]
    fn a_form_body_within_the_limit_is_read_whole() {
        let body = through_engine(
            &[("CONTENT_LENGTH", "18")],
            &[b"name=Ada", b"+L&x=%26yz"],
            async |req: &mut Request<'_>| req.read_to_vec(18).await,
        );
        let body = body.expect("18 bytes fit a limit of 18");
        assert_eq!(body, b"name=Ada+L&x=%26yz");
        assert_eq!(pairs(std::str::from_utf8(&body).unwrap()), owned(&[("name", "Ada L"), ("x", "&yz")]));
    }

    #[test]
    fn a_form_body_over_the_limit_is_refused() {
        // Declared too large: refused before reading.
        let (result, received) = through_engine(
            &[("CONTENT_LENGTH", "20")],
            &[b"01234567890123456789"],
            async |req: &mut Request<'_>| (req.read_to_vec(10).await, req.stdin_received()),
        );
        assert!(matches!(result, Err(StreamError::BodyTooLarge)), "{result:?}");
        assert_eq!(received, 0, "nothing was read");
        // No CONTENT_LENGTH: refused once more than the limit arrived.
        let result = through_engine(&[], &[b"0123456", b"789", b"X"], async |req: &mut Request<'_>| {
            req.read_to_vec(10).await
        });
        assert!(matches!(result, Err(StreamError::BodyTooLarge)), "{result:?}");
        // Exactly the limit without CONTENT_LENGTH is fine.
        let result = through_engine(&[], &[b"0123456", b"789"], async |req: &mut Request<'_>| {
            req.read_to_vec(10).await
        });
        assert_eq!(result.expect("10 bytes fit"), b"0123456789");
    }
}
