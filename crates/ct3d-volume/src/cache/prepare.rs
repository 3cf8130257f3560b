//! [`prepare`]: hash every scan (through the index), reuse each sound entry and compute the
//! missing ones in parallel, and report the items in dataset order.

use super::*;

/// [`prepare`] with the real pipeline, [`preprocess::process_file`] with `options.config`.
pub fn prepare_default(
    dataset: &Dataset,
    cache_dir: &Path,
    options: &PrepareOptions,
    observer: &dyn PrepareObserver,
) -> Result<PreparedDataset, CacheError> {
    prepare(
        dataset,
        cache_dir,
        options,
        |path| preprocess::process_file(path, &options.config),
        observer,
    )
}

/// A distinct key's entry and whether it was a cache hit, or its error (skip_bad), shared by
/// every item with that key.
pub(super) type KeyOutcome = Result<(CacheEntry, bool), Arc<CacheError>>;

/// An item's entry key and content hash, or its error (skip_bad), shared by every item that
/// failed with it.
type KeyOf = Result<(String, [u8; 32]), Arc<CacheError>>;

/// What the index should remember about an entry's verification after this run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Verified {
    /// Trusted by its unchanged stamp: keep the record.
    Unchanged,
    /// Checksummed (or written) now: record this stamp, or none if the file is too fresh.
    Now(Option<FileStamp>),
}

/// Preprocesses every scan of `dataset` with `process` into `cache_dir` (created if needed), in
/// parallel, reusing entries whose key (file content + `options.config`) is already there.
///
/// `process` must be the pipeline `options.config` describes (it is injected so that tests and
/// other pipelines can use the cache); scans with identical bytes are processed once. An existing
/// entry is reused if its header and length are right and its checksum passed before while its
/// size and modification time stayed the same (else it is checksummed now, and rebuilt if bad).
/// Results are identical whatever the thread count. `process`'s errors must name the scan (their
/// message becomes [`CacheError::Process`]'s). A scan that cannot be read or processed fails
/// the run with its path in the message, unless `options.skip_bad` is set: then it is reported in
/// `failures`.
pub fn prepare<E>(
    dataset: &Dataset,
    cache_dir: &Path,
    options: &PrepareOptions,
    process: impl Fn(&Path) -> Result<Volume, E> + Sync,
    observer: &dyn PrepareObserver,
) -> Result<PreparedDataset, CacheError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let run_started = SystemTime::now();
    let dir_error = |source| CacheError::Folder {
        path: cache_dir.to_owned(),
        source,
    };
    fs::create_dir_all(cache_dir).map_err(dir_error)?;
    let tag = cache_dir.join("CACHEDIR.TAG");
    if !tag.exists() {
        crate::atomic::write_bytes_atomic(&tag, CACHEDIR_TAG.as_bytes()).map_err(dir_error)?;
    }
    let items = dataset.items();
    observer.started(items.len());

    // 1. Content hashes, from the index where the file is unchanged.
    let index_path = cache_dir.join(INDEX_FILE_NAME);
    let mut index = Index::load(&index_path);
    let hashed: Vec<Result<Hashed, CacheError>> = items
        .par_iter()
        .map(|item| hash_with_index(&item.path, &index, run_started))
        .collect();
    let mut index_changed = false;
    // What this run learnt, applied to the index as it is on disk when saving (other processes
    // may have added records meanwhile): path → new record, or `None` to forget it.
    let mut file_updates: Vec<(String, Option<IndexedFile>)> = Vec::new();
    let mut stats = PrepareStats::default();
    // Per item: its entry key and content hash, or its error (skip_bad).
    let mut keys: Vec<KeyOf> = Vec::with_capacity(items.len());
    for (item, result) in items.iter().zip(hashed) {
        match result {
            Ok(h) => {
                stats.hashed += usize::from(h.was_hashed);
                match (h.index_key, h.index_update) {
                    (Some(path), Some(record)) => {
                        if index.files.get(&path) != Some(&record) {
                            index_changed = true;
                            file_updates.push((path.clone(), Some(record.clone())));
                        }
                        index.files.insert(path, record);
                    }
                    (Some(path), None) if h.was_hashed && index.files.remove(&path).is_some() => {
                        index_changed = true;
                        file_updates.push((path, None));
                    }
                    _ => {}
                }
                keys.push(Ok((entry_key(&h.content, &options.config)?, h.content)));
            }
            Err(e) if options.skip_bad => {
                observer.failed(&item.path, &e);
                keys.push(Err(Arc::new(e)));
            }
            Err(e) => return Err(e),
        }
    }
    let scans_before = index.files.len();
    index.files.retain(|path, _| Path::new(path).exists());
    index_changed |= index.files.len() != scans_before;
    if index_changed {
        // Saved now so that the hashing is not lost if processing fails below.
        Index::update(&index_path, |on_disk| {
            for (path, record) in file_updates {
                match record {
                    Some(record) => on_disk.files.insert(path, record),
                    None => on_disk.files.remove(&path),
                };
            }
            on_disk.files.retain(|path, _| Path::new(path).exists());
        })?;
    }

    // 2. One entry per distinct key: reuse it if valid, else compute it from its first item.
    let mut items_by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if let Ok((key, _)) = key {
            items_by_key
                .entry(key)
                .or_insert_with(|| {
                    unique.push(key);
                    Vec::new()
                })
                .push(i);
        }
    }
    let computed = AtomicUsize::new(0);
    let outcomes: Vec<(KeyOutcome, Verified)> = unique
        .par_iter()
        .map(|&key| {
            let members = &items_by_key[key];
            let path = cache_dir.join(format!("{key}.{ENTRY_EXTENSION}"));
            let trusted = (!options.verify_entries)
                .then(|| index.verified_entries.get(key))
                .flatten();
            let (outcome, verified) = match reusable_entry(&path, trusted, run_started) {
                Some((entry, verified)) => (Ok((entry, true)), verified),
                None => {
                    let source = &items[members[0]].path;
                    let written = process(source)
                        .map_err(|e| {
                            CacheError::Process(ProcessFailure {
                                path: source.clone(),
                                error: Box::new(e),
                            })
                        })
                        .and_then(|volume| Ok(CacheEntry::write(&path, &volume)?));
                    match written {
                        Ok(entry) => {
                            computed.fetch_add(1, Ordering::Relaxed);
                            (Ok((entry, false)), Verified::Now(None))
                        }
                        Err(e) if options.skip_bad => (Err(Arc::new(e)), Verified::Now(None)),
                        Err(e) => return Err(e),
                    }
                }
            };
            for &i in members {
                let source = &items[i].path;
                match &outcome {
                    Ok((_, true)) => observer.hit(source),
                    Ok((_, false)) => observer.processed(source),
                    Err(error) => observer.failed(source, error),
                }
            }
            Ok((outcome, verified))
        })
        .collect::<Result<_, CacheError>>()?;
    stats.computed = computed.into_inner();

    // Remember which entries passed their checksum, forgetting rebuilt and deleted ones, and
    // which parameters made each entry.
    let verified_before = index.verified_entries.clone();
    let configs_before = index.entry_configs.clone();
    for (&key, (outcome, verified)) in unique.iter().zip(&outcomes) {
        if outcome.is_ok() && index.entry_configs.get(key) != Some(&options.config) {
            index
                .entry_configs
                .insert(key.to_owned(), options.config.clone());
        }
        match verified {
            Verified::Unchanged => {}
            Verified::Now(Some(stamp)) => {
                index.verified_entries.insert(key.to_owned(), *stamp);
            }
            Verified::Now(None) => {
                index.verified_entries.remove(key);
            }
        }
    }
    index
        .verified_entries
        .retain(|key, _| cache_dir.join(format!("{key}.{ENTRY_EXTENSION}")).exists());
    index
        .entry_configs
        .retain(|key, _| cache_dir.join(format!("{key}.{ENTRY_EXTENSION}")).exists());
    if index.verified_entries != verified_before || index.entry_configs != configs_before {
        // Only what changed here is applied to the index on disk (see `Index::update`).
        let mut verified_updates = Vec::new();
        for (key, stamp) in &index.verified_entries {
            if verified_before.get(key) != Some(stamp) {
                verified_updates.push((key.clone(), Some(*stamp)));
            }
        }
        for key in verified_before.keys() {
            if !index.verified_entries.contains_key(key) {
                verified_updates.push((key.clone(), None));
            }
        }
        let config_updates: Vec<_> = index
            .entry_configs
            .iter()
            .filter(|(key, config)| configs_before.get(*key) != Some(*config))
            .map(|(key, config)| (key.clone(), config.clone()))
            .collect();
        Index::update(&index_path, |on_disk| {
            for (key, stamp) in verified_updates {
                match stamp {
                    Some(stamp) => on_disk.verified_entries.insert(key, stamp),
                    None => on_disk.verified_entries.remove(&key),
                };
            }
            on_disk.entry_configs.extend(config_updates);
            let exists = |key: &String| cache_dir.join(format!("{key}.{ENTRY_EXTENSION}")).exists();
            on_disk.verified_entries.retain(|key, _| exists(key));
            on_disk.entry_configs.retain(|key, _| exists(key));
        })?;
    }

    // 3. Items in dataset order.
    let by_key: HashMap<&str, &KeyOutcome> = unique
        .iter()
        .copied()
        .zip(outcomes.iter().map(|(outcome, _)| outcome))
        .collect();
    let mut prepared = Vec::with_capacity(items.len());
    let mut failures = Vec::new();
    for (item, key) in items.iter().zip(&keys) {
        let outcome = match key
            .as_ref()
            .map(|(key, content)| (by_key[key.as_str()], content))
        {
            Err(error) | Ok((Err(error), _)) => Err(crate::chain(error.as_ref())),
            Ok((Ok((entry, hit)), content)) => Ok((entry.clone(), *hit, hex::encode(content))),
        };
        match outcome {
            Ok((entry, cache_hit, sha256)) => {
                stats.hits += usize::from(cache_hit);
                prepared.push(PreparedItem {
                    source: item.path.clone(),
                    label: item.label,
                    entry,
                    cache_hit,
                    sha256,
                });
            }
            Err(error) => failures.push(PrepareFailure {
                source: item.path.clone(),
                label: item.label,
                error,
            }),
        }
    }
    stats.failed = failures.len();
    let [negative, positive] = dataset.class_names();
    Ok(PreparedDataset {
        cache_dir: cache_dir.to_owned(),
        class_names: [negative.to_owned(), positive.to_owned()],
        items: prepared,
        failures,
        stats,
    })
}

/// The entry at `path` if it exists and is sound, and how it was verified. Header and length are
/// always checked; the checksum too unless the file still has the `trusted` stamp it had when its
/// checksum last passed. A damaged entry is logged and `None` (it gets rebuilt).
pub(super) fn reusable_entry(
    path: &Path,
    trusted: Option<&FileStamp>,
    run_started: SystemTime,
) -> Option<(CacheEntry, Verified)> {
    if !path.exists() {
        return None;
    }
    let checked = CacheEntry::open(path).and_then(|entry| {
        let meta = fs::metadata(path).map_err(|source| EntryError::Io {
            path: path.to_owned(),
            source,
        })?;
        if trusted.is_some() && trusted.copied() == FileStamp::of(&meta) {
            return Ok((entry, Verified::Unchanged));
        }
        entry.verify()?;
        Ok((entry, Verified::Now(FileStamp::settled(&meta, run_started))))
    });
    match checked {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::warn!("rebuilding damaged cache entry: {}", crate::chain(&e));
            None
        }
    }
}
