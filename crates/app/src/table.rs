//! The devices table, held in memory so that filtering, sorting and scrolling 100,000 rows never
//! waits on the database: the UI asks for a window of rows at a time.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use updraft_ddm::OsVersion;

use crate::view::{DeviceFacets, DevicePage, DeviceQuery, DeviceRowView};

/// Most rows one query returns.
pub const MAX_WINDOW: usize = 1000;

/// The rows, kept compact: a table of 100,000 devices stays in memory for as long as the app
/// runs, and the UI only ever sees a window of it. Values few devices differ in (model,
/// platform, OS, build, state) are stored once and referred to by number; a row owns only its
/// id, name, serial number and last report.
#[derive(Debug, Default)]
pub struct DeviceTable {
    /// In the default order (name, then id): the default order needs no sort, and every other
    /// order breaks ties by position.
    rows: Vec<Row>,
    /// The repeated values the rows refer to.
    values: Values,
    /// Row positions in enrollment-id order, to find a row by id.
    by_id: Vec<u32>,
    /// The last query's matching rows in order: scrolling asks for page after page of the same
    /// query, which then costs a page, not a sort of every row.
    last_order: std::sync::Mutex<Option<(String, std::sync::Arc<Vec<usize>>)>>,
    /// The values each filter offers: the devices screen asks on every visit, and reading every
    /// row for it would hold up whatever the admin clicks next.
    facets: DeviceFacets,
}

#[derive(Debug)]
struct Row {
    id: Box<str>,
    name: Box<str>,
    serial: Box<str>,
    last_report: Option<Box<str>>,
    /// Lower-cased name, serial and id, for search.
    haystack: Box<str>,
    model: Value,
    platform: Value,
    os: Value,
    build: Value,
    state: Value,
    rollout: Option<i64>,
}

/// A value in [`Values`].
type Value = u32;

/// Each distinct repeated value once, with its OS version parsed, for sorting by version rather
/// than by text.
#[derive(Debug, Default)]
struct Values {
    texts: Vec<Box<str>>,
    versions: Vec<Option<OsVersion>>,
    numbers: HashMap<Box<str>, Value>,
}

impl Values {
    fn intern(&mut self, text: String) -> Value {
        if let Some(&value) = self.numbers.get(text.as_str()) {
            return value;
        }
        let value = Value::try_from(self.texts.len()).expect("fewer than 2^32 distinct values");
        let text = text.into_boxed_str();
        self.versions
            .push(OsVersion::parse(base_version(&text)).ok());
        self.texts.push(text.clone());
        self.numbers.insert(text, value);
        value
    }

    fn text(&self, value: Value) -> &str {
        &self.texts[value as usize]
    }

    fn version(&self, value: Value) -> Option<&OsVersion> {
        self.versions[value as usize].as_ref()
    }
}

/// Rows added one at a time, as the store reads them.
#[derive(Debug, Default)]
pub struct DeviceTableBuilder {
    rows: Vec<Row>,
    values: Values,
}

impl DeviceTableBuilder {
    /// Adds a row.
    pub fn push(&mut self, row: DeviceRowView) {
        let values = &mut self.values;
        self.rows.push(Row {
            haystack: format!("{}\n{}\n{}", row.name, row.serial, row.id)
                .to_lowercase()
                .into_boxed_str(),
            id: row.id.into_boxed_str(),
            name: row.name.into_boxed_str(),
            serial: row.serial.into_boxed_str(),
            last_report: row.last_report.map(String::into_boxed_str),
            model: values.intern(row.model),
            platform: values.intern(row.platform),
            os: values.intern(row.os),
            build: values.intern(row.build),
            state: values.intern(row.state),
            rollout: row.rollout,
        });
    }

    /// The table.
    pub fn build(self) -> DeviceTable {
        let Self {
            mut rows,
            mut values,
        } = self;
        rows.sort_unstable_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        rows.shrink_to_fit();
        values.numbers = HashMap::new();
        let mut by_id: Vec<u32> = (0..rows.len())
            .map(|i| u32::try_from(i).expect("fewer than 2^32 devices"))
            .collect();
        by_id.sort_unstable_by(|&a, &b| rows[a as usize].id.cmp(&rows[b as usize].id));
        let facets = facets_of(&rows, &values);
        DeviceTable {
            rows,
            values,
            by_id,
            last_order: std::sync::Mutex::new(None),
            facets,
        }
    }
}

impl DeviceTable {
    /// A table of these rows.
    pub fn new(rows: impl IntoIterator<Item = DeviceRowView>) -> Self {
        let mut builder = DeviceTableBuilder::default();
        for row in rows {
            builder.push(row);
        }
        builder.build()
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A device's name, by enrollment id.
    pub fn name_of(&self, id: &str) -> Option<&str> {
        let position = self
            .by_id
            .binary_search_by(|&i| (*self.rows[i as usize].id).cmp(id))
            .ok()?;
        Some(&self.rows[self.by_id[position] as usize].name)
    }

    fn view(&self, row: &Row) -> DeviceRowView {
        let text = |value| self.values.text(value).to_owned();
        DeviceRowView {
            id: row.id.to_string(),
            name: row.name.to_string(),
            serial: row.serial.to_string(),
            model: text(row.model),
            platform: text(row.platform),
            os: text(row.os),
            build: text(row.build),
            state: text(row.state),
            rollout: row.rollout,
            last_report: row.last_report.as_deref().map(str::to_owned),
        }
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
            .map(|&i| self.view(&self.rows[i]))
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
        let text = |value| self.values.text(value);
        let mut matching: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let row = &self.rows[i];
                (needle.is_empty() || row.haystack.contains(&needle))
                    && query.model.as_ref().is_none_or(|m| text(row.model) == m)
                    && query.os.as_ref().is_none_or(|o| text(row.os) == o)
                    && query.state.as_ref().is_none_or(|s| text(row.state) == s)
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
                "model" => text(ra.model).cmp(text(rb.model)),
                "os" => self
                    .values
                    .version(ra.os)
                    .cmp(&self.values.version(rb.os))
                    .then_with(|| text(ra.os).cmp(text(rb.os))),
                "state" => text(ra.state).cmp(text(rb.state)),
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

fn facets_of(rows: &[Row], values: &Values) -> DeviceFacets {
    let mut models = BTreeSet::new();
    let mut os = BTreeSet::new();
    let mut states = BTreeSet::new();
    let mut rollouts = BTreeSet::new();
    for row in rows {
        models.insert(values.text(row.model));
        os.insert((values.version(row.os), values.text(row.os)));
        states.insert(values.text(row.state));
        rollouts.extend(row.rollout);
    }
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
    fn rows_come_back_whole_and_names_are_found_by_id() {
        let t = table();
        let page = t.query(&DeviceQuery {
            search: "barbara".into(),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(
            page.rows,
            [row("4", "Barbara", "Mac15,3", "26.10", "waiting")]
        );
        assert_eq!(t.name_of("2"), Some("Grace"));
        assert_eq!(t.name_of("5"), None);
        let facets = t.facets();
        assert_eq!(facets.os, ["15.7.4", "26.3", "26.3.1 (a)", "26.10"]);
        assert_eq!(facets.models, ["Mac14,2", "Mac15,3"]);
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
