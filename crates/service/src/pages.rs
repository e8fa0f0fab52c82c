//! A page of results and the cursor to the next one.

/// One page of a listing and the cursor for the next (None on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row, if
    /// present, only proves there is a next page.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

impl super::Services {
    /// The position an id-ordered listing's `cursor` names, checked against
    /// the listing's `scope`: a tampered cursor, or another listing's, is a 400.
    pub(crate) fn id_cursor(
        &self,
        cursor: Option<&str>,
        scope: &str,
    ) -> super::ServiceResult<Option<domain::IdCursor>> {
        cursor
            .map(|c| {
                domain::IdCursor::decode(c, scope, &self.cursor_key)
                    .ok_or(super::ServiceError::BadCursor)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overfetch_decides_the_next_cursor() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next_cursor.as_deref(), Some("2"));
        let p = Page::from_overfetch(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(p.next_cursor, None);
        let p = Page::from_overfetch(Vec::<i32>::new(), 2, |n| n.to_string());
        assert!(p.items.is_empty() && p.next_cursor.is_none());
    }
}
