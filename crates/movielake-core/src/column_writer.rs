//! A Parquet file writer that encodes the columns of each batch on several threads.
//!
//! `ArrowWriter` encodes one column after another on the calling thread. For large files that
//! is most of the conversion's CPU, so this writer hands each batch's leaf columns to a small
//! scoped pool (the calling thread plus `threads - 1` helpers pulling columns off a shared
//! counter, biggest first) and closes each row group's column chunks the same way. The bytes are
//! the same as `ArrowWriter`'s with the same properties: same schema metadata, same pages, same
//! row groups, only produced in parallel.
//!
//! It also picks, per part, which string columns get a dictionary: a column whose first values
//! are mostly distinct (an id, a free-text title) would only have every value interned until the
//! dictionary gives up, so it is written plain from the start.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

/// Below this many rows a batch is encoded on the calling thread: starting helpers would cost
/// more than they save.
const PARALLEL_FROM_ROWS: usize = 8 * 1024;
/// Values of a string column looked at to decide on its dictionary.
const DICTIONARY_SAMPLE: usize = 4 * 1024;

/// Writes one Parquet file, row group by row group, encoding columns in parallel.
pub struct ColumnParallelWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    columns: Vec<ArrowColumnWriter>,
    rows_per_group: usize,
    rows_in_group: usize,
    groups: usize,
    threads: usize,
}

impl<W: Write + Send> ColumnParallelWriter<W> {
    /// `first` is the first batch the file will get (not written here): it decides which string
    /// columns are written without a dictionary.
    pub fn try_new(
        sink: W,
        schema: SchemaRef,
        properties: WriterProperties,
        first: &RecordBatch,
        threads: usize,
    ) -> Result<Self, ParquetError> {
        let rows_per_group = properties.max_row_group_row_count().unwrap_or(1024 * 1024).max(1);
        let mut builder = properties.into_builder();
        for (field, array) in schema.fields().iter().zip(first.columns()) {
            if mostly_distinct(array) {
                builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        // ArrowWriter puts the Arrow schema in the file metadata; its lower half does the rest.
        let (file, factory) =
            ArrowWriter::try_new(sink, schema.clone(), Some(builder.build()))?.into_serialized_writer()?;
        let columns = factory.create_column_writers(0)?;
        Ok(ColumnParallelWriter {
            file,
            factory,
            schema,
            columns,
            rows_per_group,
            rows_in_group: 0,
            groups: 0,
            threads: threads.max(1),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.rows_per_group - self.rows_in_group).min(batch.num_rows() - offset);
            self.encode(&batch.slice(offset, take))?;
            self.rows_in_group += take;
            offset += take;
            if self.rows_in_group >= self.rows_per_group {
                self.close_group()?;
            }
        }
        Ok(())
    }

    /// Writes the last row group and the footer; gives the sink back.
    pub fn into_inner(mut self) -> Result<W, ParquetError> {
        if self.rows_in_group > 0 {
            self.close_group()?;
        }
        self.file.into_inner()
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(self.columns.len());
        for (field, array) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        let mut jobs: Vec<(usize, &mut ArrowColumnWriter, ArrowLeafColumn)> = (self.columns.iter_mut())
            .zip(leaves)
            .zip(leaf_sizes(batch))
            .map(|((writer, leaf), size)| (size, writer, leaf))
            .collect();
        // Biggest first, so the last column started is a small one and no thread waits long.
        jobs.sort_by_key(|(size, ..)| std::cmp::Reverse(*size));
        let threads = if batch.num_rows() >= PARALLEL_FROM_ROWS {
            self.threads
        } else {
            1
        };
        parallel(jobs, threads, |(_, writer, leaf)| writer.write(&leaf))?;
        Ok(())
    }

    fn close_group(&mut self) -> Result<(), ParquetError> {
        self.groups += 1;
        let next = self.factory.create_column_writers(self.groups)?;
        let writers = std::mem::replace(&mut self.columns, next);
        let chunks = parallel(writers, self.threads, ArrowColumnWriter::close)?;
        let mut group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.rows_in_group = 0;
        Ok(())
    }
}

/// Approximate encoded weight of each leaf column of `batch`, in leaf order (nested columns
/// count once per leaf, which is all the scheduling needs).
fn leaf_sizes(batch: &RecordBatch) -> Vec<usize> {
    fn leaves(data_type: &DataType) -> usize {
        match data_type {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => leaves(f.data_type()),
            DataType::Struct(fields) => fields.iter().map(|f| leaves(f.data_type())).sum(),
            DataType::Map(f, _) => leaves(f.data_type()),
            _ => 1,
        }
    }
    let mut sizes = Vec::new();
    for array in batch.columns() {
        let n = leaves(array.data_type());
        let size = array.get_array_memory_size() / n.max(1);
        sizes.extend(std::iter::repeat_n(size, n));
    }
    sizes
}

/// Whether a string column's first values are mostly distinct (a dictionary would not pay).
fn mostly_distinct(array: &ArrayRef) -> bool {
    let Some(strings) = array.as_any().downcast_ref::<StringArray>() else {
        return false;
    };
    let mut seen = HashSet::with_capacity(DICTIONARY_SAMPLE);
    let mut sampled = 0;
    for value in strings.iter().flatten().take(DICTIONARY_SAMPLE) {
        seen.insert(value);
        sampled += 1;
    }
    sampled >= 64 && seen.len() * 4 > sampled * 3
}

/// Runs `work` on every item on up to `threads` threads (this one included) and returns the
/// results in item order; the first error wins.
fn parallel<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> Result<R, ParquetError> + Sync,
) -> Result<Vec<R>, ParquetError> {
    if threads <= 1 || items.len() <= 1 {
        return items.into_iter().map(work).collect();
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    let results: Vec<Mutex<Option<Result<R, ParquetError>>>> = slots.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let run = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            let item = slot.lock().map(|mut s| s.take()).unwrap_or(None);
            if let Some(item) = item {
                let result = work(item);
                if let Ok(mut r) = results[i].lock() {
                    *r = Some(result);
                }
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads.min(slots.len()) {
            scope.spawn(run);
        }
        run();
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(ParquetError::General("a column encoder stopped".into())))
        })
        .collect()
}
