//! Following a paged listing (ListBuckets' `NextMarker`, ListObjectsV2's continuation token) as a
//! stream of pages, refusing a cursor that would make the listing loop.

use std::future::Future;

use futures_util::Stream;

use super::Reply;
use super::error::{Operation, OssError, OssErrorKind};

/// A listing page that may continue: where the next page starts, when it is truncated.
pub trait Paged {
    /// The cursor to ask the next page with, or `None` when this page ends the listing.
    fn next_cursor(&self) -> Option<&str>;
}

/// The pages of a listing: `fetch(cursor)` asks for one page (the first with `""`); a truncated
/// page continues from its cursor unless `refuse(asked, next, page_number)` names a problem,
/// which ends the stream with a `BadResponse` naming `operation` and `bucket`. Any error ends it.
pub fn follow<'a, P, F, Fut>(
    operation: Operation,
    bucket: String,
    mut fetch: F,
    refuse: fn(&str, &str, usize) -> Option<String>,
) -> impl Stream<Item = Result<P, OssError>> + 'a
where
    P: Paged + 'a,
    F: FnMut(String) -> Fut + 'a,
    Fut: Future<Output = Result<Reply<P>, OssError>> + 'a,
{
    futures_util::stream::unfold(Some((String::new(), 1)), move |next| {
        let asked = next.map(|(cursor, number)| (fetch(cursor.clone()), cursor, number));
        let bucket = bucket.clone();
        async move {
            let (reply, asked, number) = asked?;
            let reply = match reply.await {
                Ok(reply) => reply,
                Err(error) => return Some((Err(error), None)),
            };
            let page = reply.value;
            let Some(next) = page.next_cursor().map(str::to_owned) else {
                return Some((Ok(page), None));
            };
            if let Some(detail) = refuse(&asked, &next, number) {
                let error = OssError {
                    operation,
                    bucket,
                    attempts: reply.attempts,
                    kind: OssErrorKind::BadResponse {
                        status: 200,
                        request_id: reply.request_id,
                        detail,
                    },
                };
                return Some((Err(error), None));
            }
            Some((Ok(page), Some((next, number + 1))))
        }
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// A page of a scripted listing: its items, and its cursor when it is truncated.
    struct Page(Option<&'static str>);

    impl Paged for Page {
        fn next_cursor(&self) -> Option<&str> {
            self.0
        }
    }

    fn reply(page: Page) -> Reply<Page> {
        Reply {
            value: page,
            request_id: "req-1".into(),
            attempts: 2,
        }
    }

    fn never_refused(_: &str, _: &str, _: usize) -> Option<String> {
        None
    }

    fn refuse_repeats(asked: &str, next: &str, _: usize) -> Option<String> {
        (asked == next).then(|| format!("{next} repeats"))
    }

    #[tokio::test]
    async fn each_page_is_asked_with_the_cursor_of_the_one_before() {
        let mut asked = Vec::new();
        let script = [Some("b"), Some("c"), None];
        let stream = follow(
            Operation::ListObjects,
            "bkt".into(),
            |cursor: String| {
                let page = script[asked.len()];
                asked.push(cursor);
                async move { Ok(reply(Page(page))) }
            },
            never_refused,
        );
        let pages: Vec<_> = stream.collect().await;
        assert_eq!(pages.len(), 3);
        assert!(pages.iter().all(Result::is_ok));
        assert_eq!(asked, ["", "b", "c"]);
    }

    #[tokio::test]
    async fn a_refused_cursor_ends_the_stream_with_a_typed_error() {
        let stream = follow(
            Operation::ListObjects,
            "bkt".into(),
            |_cursor: String| async move { Ok(reply(Page(Some("x")))) },
            refuse_repeats,
        );
        let pages: Vec<_> = stream.collect().await;
        assert_eq!(pages.len(), 2, "the first page, then the refusal");
        let error = pages[1].as_ref().err().expect("the loop is refused");
        assert_eq!(error.bucket, "bkt");
        assert_eq!(error.attempts, 2);
        match &error.kind {
            OssErrorKind::BadResponse {
                request_id, detail, ..
            } => {
                assert_eq!(request_id, "req-1");
                assert_eq!(detail, "x repeats");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_error_ends_the_stream() {
        let mut calls = 0;
        let stream = follow(
            Operation::ListBuckets,
            String::new(),
            |_cursor: String| {
                calls += 1;
                async move {
                    Err::<Reply<Page>, _>(OssError {
                        operation: Operation::ListBuckets,
                        bucket: String::new(),
                        attempts: 1,
                        kind: OssErrorKind::BadResponse {
                            status: 500,
                            request_id: String::new(),
                            detail: "boom".into(),
                        },
                    })
                }
            },
            never_refused,
        );
        let pages: Vec<_> = stream.collect().await;
        assert_eq!(pages.len(), 1);
        assert!(pages[0].is_err());
        assert_eq!(calls, 1);
    }
}
