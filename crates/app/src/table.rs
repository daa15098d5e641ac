//! The devices table, held in memory so that filtering, sorting and scrolling 100,000 rows never
//! waits on the database: the UI asks for a window of rows at a time.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use updraft_ddm::OsVersion;

use crate::view::{DeviceFacets, DevicePage, DeviceQuery, DeviceRowView};

/// Most rows one query returns.
pub const MAX_WINDOW: usize = 1000;

/// The rows, with what sorting and searching need computed once.
#[derive(Debug, Default)]
pub struct DeviceTable {
    /// In the default order (name, then id): the default order needs no sort, and every other
    /// order breaks ties by position.
    rows: Vec<DeviceRowView>,
    /// Lower-cased name, serial and id, for search.
    haystacks: Vec<String>,
    /// Parsed OS versions, for sorting by version rather than by text.
    versions: Vec<Option<OsVersion>>,
    /// The last query's matching rows in order: scrolling asks for page after page of the same
    /// query, which then costs a page, not a sort of every row.
    last_order: std::sync::Mutex<Option<(String, std::sync::Arc<Vec<usize>>)>>,
    /// The values each filter offers: the devices screen asks on every visit, and reading every
    /// row for it would hold up whatever the admin clicks next.
    facets: DeviceFacets,
}

impl DeviceTable {
    /// A table of these rows.
    pub fn new(mut rows: Vec<DeviceRowView>) -> Self {
        rows.sort_unstable_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        let haystacks = rows
            .iter()
            .map(|r| format!("{}\n{}\n{}", r.name, r.serial, r.id).to_lowercase())
            .collect();
        let versions: Vec<Option<OsVersion>> = rows
            .iter()
            .map(|r| OsVersion::parse(base_version(&r.os)).ok())
            .collect();
        let facets = facets_of(&rows, &versions);
        Self {
            rows,
            haystacks,
            versions,
            last_order: std::sync::Mutex::new(None),
            facets,
        }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A row by enrollment id.
    pub fn row(&self, id: &str) -> Option<&DeviceRowView> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// Every row.
    pub fn rows(&self) -> &[DeviceRowView] {
        &self.rows
    }

    /// The rows a query matches, sorted, windowed.
    pub fn query(&self, query: &DeviceQuery) -> DevicePage {
        let key = format!(
            "{:?}",
            (
                query.search.trim().to_lowercase(),
                &query.model,
                &query.os,
                &query.state,
                query.rollout,
                &query.sort,
                query.descending
            )
        );
        let cached = self.last_order.lock().ok().and_then(|last| {
            last.as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, o)| o.clone())
        });
        let matching = match cached {
            Some(order) => order,
            None => {
                let order = std::sync::Arc::new(self.order(query));
                if let Ok(mut last) = self.last_order.lock() {
                    *last = Some((key, order.clone()));
                }
                order
            }
        };
        let limit = query.limit.clamp(1, MAX_WINDOW);
        let rows = matching
            .iter()
            .skip(query.offset)
            .take(limit)
            .map(|&i| self.rows[i].clone())
            .collect();
        DevicePage {
            total: matching.len(),
            offset: query.offset,
            rows,
        }
    }

    /// The rows a query matches, in its order.
    fn order(&self, query: &DeviceQuery) -> Vec<usize> {
        let needle = query.search.trim().to_lowercase();
        let mut matching: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let row = &self.rows[i];
                (needle.is_empty() || self.haystacks[i].contains(&needle))
                    && query.model.as_ref().is_none_or(|m| &row.model == m)
                    && query.os.as_ref().is_none_or(|o| &row.os == o)
                    && query.state.as_ref().is_none_or(|s| &row.state == s)
                    && query.rollout.is_none_or(|r| row.rollout == Some(r))
            })
            .collect();
        let sort = match query.sort.as_deref() {
            // The rows are kept in this order.
            None | Some("name") => {
                if query.descending {
                    matching.reverse();
                }
                return matching;
            }
            Some(sort) => sort,
        };
        let order = |a: &usize, b: &usize| -> Ordering {
            let (ra, rb) = (&self.rows[*a], &self.rows[*b]);
            let primary = match sort {
                "serial" => ra.serial.cmp(&rb.serial),
                "model" => ra.model.cmp(&rb.model),
                "os" => self.versions[*a]
                    .cmp(&self.versions[*b])
                    .then_with(|| ra.os.cmp(&rb.os)),
                "state" => ra.state.cmp(&rb.state),
                "lastReport" => ra.last_report.cmp(&rb.last_report),
                _ => Ordering::Equal,
            };
            primary.then_with(|| a.cmp(b))
        };
        if query.descending {
            matching.sort_unstable_by(|a, b| order(b, a));
        } else {
            matching.sort_unstable_by(order);
        }
        matching
    }

    /// The values each filter offers.
    pub fn facets(&self) -> DeviceFacets {
        self.facets.clone()
    }
}

fn facets_of(rows: &[DeviceRowView], versions: &[Option<OsVersion>]) -> DeviceFacets {
    let mut models = BTreeSet::new();
    let mut os: Vec<(Option<&OsVersion>, &str)> = Vec::new();
    let mut seen_os = BTreeSet::new();
    let mut states = BTreeSet::new();
    let mut rollouts = BTreeSet::new();
    for (row, version) in rows.iter().zip(versions) {
        models.insert(row.model.as_str());
        if seen_os.insert(row.os.as_str()) {
            os.push((version.as_ref(), row.os.as_str()));
        }
        states.insert(row.state.as_str());
        rollouts.extend(row.rollout);
    }
    os.sort();
    DeviceFacets {
        models: models
            .into_iter()
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        os: os
            .into_iter()
            .map(|(_, o)| o.to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        states: states.into_iter().map(str::to_owned).collect(),
        rollouts: rollouts.into_iter().collect(),
    }
}

/// `26.3.1 (a)` → `26.3.1`.
fn base_version(os: &str) -> &str {
    os.split_whitespace().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str, model: &str, os: &str, state: &str) -> DeviceRowView {
        DeviceRowView {
            id: id.into(),
            name: name.into(),
            serial: format!("SER{id}"),
            model: model.into(),
            platform: "macOS".into(),
            os: os.into(),
            build: String::new(),
            state: state.into(),
            rollout: Some(1),
            last_report: None,
        }
    }

    fn table() -> DeviceTable {
        DeviceTable::new(vec![
            row("1", "Ada", "Mac14,2", "26.3", "waiting"),
            row("2", "Grace", "Mac15,3", "15.7.4", "failed"),
            row("3", "Alan", "Mac14,2", "26.3.1 (a)", "cleaned_up"),
            row("4", "Barbara", "Mac15,3", "26.10", "waiting"),
        ])
    }

    fn ids(page: &DevicePage) -> Vec<&str> {
        page.rows.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn os_sorts_by_version_not_by_text() {
        let page = table().query(&DeviceQuery {
            sort: Some("os".into()),
            limit: 10,
            ..Default::default()
        });
        // 15.7.4 < 26.3 < 26.3.1 (a) < 26.10; text order would put 26.10 before 26.3.
        assert_eq!(ids(&page), ["2", "1", "3", "4"]);
    }

    #[test]
    fn name_order_either_way_and_ties_broken_by_name() {
        let query = |sort: Option<&str>, descending| {
            let page = table().query(&DeviceQuery {
                sort: sort.map(Into::into),
                descending,
                limit: 10,
                ..Default::default()
            });
            ids(&page)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // Ada, Alan, Barbara, Grace.
        assert_eq!(query(None, false), ["1", "3", "4", "2"]);
        assert_eq!(query(Some("name"), true), ["2", "4", "3", "1"]);
        // Same model: by name within it.
        assert_eq!(query(Some("model"), false), ["1", "3", "4", "2"]);
    }

    #[test]
    fn filters_and_search_combine_and_total_counts_every_match() {
        let t = table();
        let page = t.query(&DeviceQuery {
            model: Some("Mac14,2".into()),
            limit: 1,
            ..Default::default()
        });
        assert_eq!(page.total, 2);
        assert_eq!(ids(&page), ["1"], "by name, Ada before Alan");
    }

    #[test]
    fn search_matches_name_or_serial_in_any_case() {
        let t = table();
        let by_name = t.query(&DeviceQuery {
            search: "grace".into(),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(ids(&by_name), ["2"]);
        let by_serial = t.query(&DeviceQuery {
            search: "ser4".into(),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(ids(&by_serial), ["4"]);
    }

    #[test]
    fn windows_page_through_without_overlap() {
        let t = table();
        let first = t.query(&DeviceQuery {
            limit: 2,
            ..Default::default()
        });
        let second = t.query(&DeviceQuery {
            offset: 2,
            limit: 2,
            ..Default::default()
        });
        assert_eq!(ids(&first), ["1", "3"]);
        assert_eq!(ids(&second), ["4", "2"]);
    }
}
