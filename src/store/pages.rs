//! Pagers: a job's events and a job's task results, read a page at a time
//! as a stream. With a [`Store`], each page takes a pooled connection for
//! its read alone, so a consumer that is slow to take what it was given
//! (a stalled client stream, a slow object store) holds no connection.

use std::future::Future;

use deadpool_postgres::GenericClient;
use futures::Stream;

use super::tasks::ResultFilter;
use super::{RecordedEvent, Store, StoreError, jobs, tasks};
use crate::domain::{JobId, TaskResult, TaskRow};

/// Pages read by `read(after)` from `start` on, until a page is short;
/// `cursor` is where the page after an item starts.
fn pages<T, C, F, Fut>(
    start: C,
    page_size: usize,
    cursor: fn(&T) -> C,
    read: F,
) -> impl Stream<Item = Result<Vec<T>, StoreError>>
where
    C: Copy,
    F: FnMut(C) -> Fut,
    Fut: Future<Output = Result<Vec<T>, StoreError>>,
{
    futures::stream::try_unfold((Some(start), read), move |(after, mut read)| async move {
        let Some(after) = after else {
            return Ok(None);
        };
        let page = read(after).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        let next = (page.len() == page_size).then(|| cursor(last));
        Ok(Some((page, (next, read))))
    })
}

/// A job's events with a sequence above `after`, in order.
pub fn job_events(
    store: &Store,
    id: JobId,
    after: u64,
    page_size: usize,
) -> impl Stream<Item = Result<Vec<RecordedEvent>, StoreError>> + '_ {
    pages(
        after,
        page_size,
        |event: &RecordedEvent| event.sequence,
        move |after| async move {
            let client = store.client().await?;
            jobs::events_after(&client, id, after, page_size).await
        },
    )
}

/// [`job_events`] on one connection (inside its transaction, if any).
pub fn job_events_on(
    client: &impl GenericClient,
    id: JobId,
    after: u64,
    page_size: usize,
) -> impl Stream<Item = Result<Vec<RecordedEvent>, StoreError>> + '_ {
    pages(
        after,
        page_size,
        |event: &RecordedEvent| event.sequence,
        move |after| jobs::events_after(client, id, after, page_size),
    )
}

/// A job's task results with their objects, in task order; only those
/// `filter` keeps. `tasks` is how many tasks the job has (numbered from 0);
/// they are read `window` task numbers at a time, and windows with nothing
/// to keep are skipped.
pub fn task_results(
    store: &Store,
    id: JobId,
    filter: ResultFilter,
    tasks: u64,
    window: usize,
) -> impl Stream<Item = Result<Vec<(TaskRow, TaskResult)>, StoreError>> + '_ {
    let end = i64::try_from(tasks).unwrap_or(i64::MAX);
    let window = i64::try_from(window.max(1)).unwrap_or(i64::MAX);
    futures::stream::try_unfold(0i64, move |start| {
        let filter = filter.clone();
        async move {
            let mut start = start;
            while start < end {
                let next = start.saturating_add(window).min(end);
                let client = store.client().await?;
                let page = tasks::results_in(&client, id, start..next, &filter).await?;
                start = next;
                if !page.is_empty() {
                    return Ok(Some((page, start)));
                }
            }
            Ok(None)
        }
    })
}
