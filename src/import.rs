//! `tally import-counters` and `tally export`: bring a site's existing counters in (so a
//! portal that has shown "Total visits: 6,738,189" for years does not start from zero), and
//! take its per-page totals out again.
//!
//! An import is checked whole before anything is written: every bad row is reported with its
//! line number and nothing changes. It is stored as one ClickHouse insert (the newest import
//! of a site is the one that counts, so re-running replaces instead of adding) and then
//! copied into Redis, where the public counters add it to the live figures.

use std::{borrow::Cow, collections::HashSet, io::Read, path::Path};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tally_clickhouse::{Baseline, Db};
use tally_core::{
    Settings, SiteId,
    event::{MAX_URL, target_key},
    page::{normalize_page_id, split_url},
};
use tally_redis::Store;

/// Longest accepted title, as for tracked titles.
const MAX_TITLE: usize = 512;
/// The name of the tracker's download events, whose totals `--downloads` imports.
pub const DOWNLOAD: &str = "download";
/// Bad rows listed before the report is cut short.
const MAX_REPORTED: usize = 20;

/// Characters that make a spreadsheet read a cell as a formula when they lead it.
const FORMULA_START: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// `value` as a CSV cell a spreadsheet shows as text: pages and titles come from visitors, and
/// a cell such as `=HYPERLINK("http://x","y")` would run as a formula when the file is opened.
/// A leading `'` (which spreadsheets do not show) neutralises it; [`from_cell`] takes it off.
fn to_cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A cell written by [`to_cell`], read back: the `'` before a formula character is dropped.
fn from_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_START) => rest,
        _ => cell,
    }
}

/// The columns of an import file: `key,count[,title]`.
struct Columns {
    key: &'static str,
    count: &'static str,
    /// Whether a third column, a title, may follow.
    titled: bool,
    /// The key as stored, or why it cannot be.
    normalize: fn(&str) -> Result<String, String>,
}

const PAGES: Columns = Columns {
    key: "page",
    count: "views",
    titled: true,
    normalize: |page| normalize_page_id(page).ok_or_else(|| "empty page".to_owned()),
};

const DOWNLOADS: Columns = Columns {
    key: "url",
    count: "downloads",
    titled: false,
    normalize: |url| {
        if url.len() > MAX_URL || url.chars().any(char::is_control) || split_url(url).is_none() {
            return Err(format!(
                "url `{url}` is not an http(s) URL of at most {MAX_URL} bytes"
            ));
        }
        Ok(target_key(url).to_owned())
    },
};

/// Parses the CSV text `page,views[,title]` (header optional). All errors, by line. Cells
/// written by `tally export` (a `'` before a leading `=`, `+`, `-`, `@`) read as they were.
pub fn parse_csv(
    text: &[u8],
    progress: &ProgressBar,
) -> Result<Vec<(String, String, u64)>, Vec<String>> {
    parse_table(text, progress, &PAGES)
}

/// Parses the CSV text `url,downloads` (header optional): the download totals of files,
/// each URL counted without its fragment as the tracker's downloads are. All errors, by line.
pub fn parse_downloads_csv(
    text: &[u8],
    progress: &ProgressBar,
) -> Result<Vec<(String, u64)>, Vec<String>> {
    let rows = parse_table(text, progress, &DOWNLOADS)?;
    Ok(rows.into_iter().map(|(url, _, n)| (url, n)).collect())
}

/// Parses `text` as rows of `columns`: (key, title, count).
fn parse_table(
    text: &[u8],
    progress: &ProgressBar,
    columns: &Columns,
) -> Result<Vec<(String, String, u64)>, Vec<String>> {
    let Columns { key, count, .. } = columns;
    let most = if columns.titled { 3 } else { 2 };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, record) in reader.byte_records().enumerate() {
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i as u64 + 1, |p| p.line());
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        if i % 1000 == 0 {
            progress.set_position(record.position().map_or(0, |p| p.byte()));
        }
        let field = |n: usize| record.get(n).map(std::str::from_utf8);
        let (first, number, title) = match (field(0), field(1), field(2)) {
            (Some(Ok(p)), Some(Ok(v)), t) => (p, v, t),
            (Some(Err(_)), ..) | (_, Some(Err(_)), _) => {
                errors.push(format!("line {line}: not valid UTF-8"));
                continue;
            }
            _ => {
                let title = if columns.titled { "[,title]" } else { "" };
                errors.push(format!("line {line}: expected {key},{count}{title}"));
                continue;
            }
        };
        if i == 0 && first.eq_ignore_ascii_case(key) && number.eq_ignore_ascii_case(count) {
            continue;
        }
        if record.len() > most {
            errors.push(format!(
                "line {line}: expected at most {most} columns, found {}",
                record.len()
            ));
            continue;
        }
        let title = match title {
            None => String::new(),
            Some(Ok(t)) if from_cell(t).len() <= MAX_TITLE => from_cell(t).to_owned(),
            Some(Ok(_)) => {
                errors.push(format!("line {line}: title longer than {MAX_TITLE} bytes"));
                continue;
            }
            Some(Err(_)) => {
                errors.push(format!("line {line}: not valid UTF-8"));
                continue;
            }
        };
        let stored = match (columns.normalize)(from_cell(first)) {
            Ok(k) => k,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let Ok(n) = number.parse::<u64>() else {
            errors.push(format!(
                "line {line}: {count} `{number}` is not a whole number"
            ));
            continue;
        };
        if !seen.insert(stored.clone()) {
            errors.push(format!("line {line}: {key} `{stored}` appears twice"));
            continue;
        }
        rows.push((stored, title, n));
    }
    progress.set_position(text.len() as u64);
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Reads and checks `file`, reporting every bad row (up to [`MAX_REPORTED`]) as one error.
fn read_checked<T>(
    file: &Path,
    show_progress: bool,
    parse: impl Fn(&[u8], &ProgressBar) -> Result<T, Vec<String>>,
) -> anyhow::Result<T> {
    let mut text = Vec::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_end(&mut text))
        .with_context(|| format!("cannot read {}", file.display()))?;
    let progress = if show_progress {
        let bar = ProgressBar::new(text.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message("checking");
        bar
    } else {
        ProgressBar::hidden()
    };
    match parse(&text, &progress) {
        Ok(rows) => {
            progress.finish_and_clear();
            Ok(rows)
        }
        Err(errors) => {
            progress.abandon();
            let shown: Vec<&String> = errors.iter().take(MAX_REPORTED).collect();
            let more = errors.len().saturating_sub(MAX_REPORTED);
            let mut msg = format!(
                "{} bad row(s) in {}; nothing was imported:",
                errors.len(),
                file.display()
            );
            for e in shown {
                msg.push_str("\n  ");
                msg.push_str(e);
            }
            if more > 0 {
                msg.push_str(&format!("\n  … and {more} more"));
            }
            bail!(msg);
        }
    }
}

/// Imports `file` as the baseline of `site`. Returns the number of pages imported.
pub async fn import_counters(
    settings: &Settings,
    site: &SiteId,
    file: &Path,
    total_views: Option<u64>,
    total_visits: Option<u64>,
    show_progress: bool,
) -> anyhow::Result<Baseline> {
    if settings.site(site.as_str()).is_none() {
        bail!("site `{site}` is not configured");
    }
    let rows = read_checked(file, show_progress, parse_csv)?;
    let page_sum: u64 = rows.iter().map(|(_, _, v)| v).sum();
    let baseline = Baseline {
        total_views: total_views.unwrap_or(page_sum),
        total_visits: total_visits.unwrap_or(0),
        pages: rows,
    };
    let db = Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await?;
    let import_id = chrono::Utc::now().timestamp_micros().max(0) as u64;
    db.store_baseline(site.as_str(), import_id, &baseline)
        .await
        .context("cannot store the baseline in ClickHouse")?;
    let store = Store::connect(&settings.redis).await?;
    apply_to_redis(&store, site, &baseline).await?;
    Ok(baseline)
}

/// Imports `file` (`url,downloads`) as the download totals of `site`, replacing its previous
/// download import; the public download counters add them to the live counts. Returns the
/// files imported.
pub async fn import_downloads(
    settings: &Settings,
    site: &SiteId,
    file: &Path,
    show_progress: bool,
) -> anyhow::Result<Vec<(String, u64)>> {
    if settings.site(site.as_str()).is_none() {
        bail!("site `{site}` is not configured");
    }
    let rows = read_checked(file, show_progress, parse_downloads_csv)?;
    let counts: Vec<((String, String), u64)> = rows
        .iter()
        .map(|(url, n)| ((DOWNLOAD.to_owned(), url.clone()), *n))
        .collect();
    let db = Db::new(&settings.clickhouse);
    db.migrate(&settings.sites).await?;
    let import_id = chrono::Utc::now().timestamp_micros().max(0) as u64;
    db.store_event_baseline(site.as_str(), import_id, &counts)
        .await
        .context("cannot store the download totals in ClickHouse")?;
    let store = Store::connect(&settings.redis).await?;
    store.replace_event_baseline(site, &counts).await.context(
        "stored in ClickHouse, but cannot copy the download totals to Redis; run the import again",
    )?;
    Ok(rows)
}

/// Copies a baseline into Redis (also used when rebuilding counters).
pub async fn apply_to_redis(
    store: &Store,
    site: &SiteId,
    baseline: &Baseline,
) -> anyhow::Result<()> {
    let pages: Vec<(String, u64)> = baseline
        .pages
        .iter()
        .map(|(p, _, v)| (p.clone(), *v))
        .collect();
    store
        .replace_baseline(site, &pages, baseline.total_views, baseline.total_visits)
        .await
        .context(
            "stored in ClickHouse, but cannot copy the baseline to Redis; run the import again",
        )
}

/// Writes `site`'s per-page totals (live + imported) as CSV `page,views,title` to `out`.
pub async fn export(
    settings: &Settings,
    site: &SiteId,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<usize> {
    if settings.site(site.as_str()).is_none() {
        bail!("site `{site}` is not configured");
    }
    let store = Store::connect(&settings.redis).await?;
    let pages = store.all_pages(site).await?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["page", "views", "title"])?;
    let mut written = 0;
    for (page, live, base, title) in &pages {
        if page.is_empty() {
            // "Other pages" (past tracking.max_pages) is no page: it cannot be imported.
            continue;
        }
        w.write_record([
            to_cell(page).as_ref(),
            &(live + base).to_string(),
            to_cell(title).as_ref(),
        ])?;
        written += 1;
    }
    w.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_cells_cannot_run_as_formulas_and_read_back_as_they_were() {
        for hostile in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
        ] {
            let cell = to_cell(hostile);
            assert!(cell.starts_with('\''), "{hostile:?} -> {cell:?}");
            assert_eq!(from_cell(&cell), hostile);
        }
        assert_eq!(to_cell("Tin nóng"), "Tin nóng");
        assert_eq!(to_cell("/a"), "/a");
        assert_eq!(
            from_cell("'quoted"),
            "'quoted",
            "only a neutralised formula loses its '"
        );
    }

    #[test]
    fn csv_rows_are_checked_by_line() {
        let ok = "page,views,title\n/a,10,Bài A\n\"/b,c\",20\narticle-3, 30 ,\"Tin \"\"hot\"\"\"\n";
        let rows = parse_csv(ok.as_bytes(), &ProgressBar::hidden()).unwrap();
        assert_eq!(
            rows,
            [
                ("/a".to_owned(), "Bài A".to_owned(), 10),
                ("/b,c".to_owned(), String::new(), 20),
                ("article-3".to_owned(), "Tin \"hot\"".to_owned(), 30),
            ]
        );
        let bad = "/a,10\n/b,ten\n/c\n/a,5\n,3\n/d,1,t,extra\n";
        let errors = parse_csv(bad.as_bytes(), &ProgressBar::hidden()).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("line 2:") && errors[0].contains("`ten`"));
        assert!(errors[1].starts_with("line 3:"));
        assert!(errors[2].starts_with("line 4:") && errors[2].contains("twice"));
        assert!(errors[3].starts_with("line 5:"));
        assert!(errors[4].starts_with("line 6:"));
        let latin1 = b"/a,1,caf\xe9\n";
        assert!(parse_csv(latin1, &ProgressBar::hidden()).unwrap_err()[0].contains("UTF-8"));
    }
}
