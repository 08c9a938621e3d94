//! A Parquet file writer that encodes the columns of each batch on several threads.
//!
//! `ArrowWriter` encodes one column after another on the calling thread. For large files that
//! is most of the conversion's CPU, so this writer hands each batch's leaf columns to a small
//! scoped pool (the calling thread plus `threads - 1` helpers pulling columns off a shared
//! counter, biggest first) and closes each row group's column chunks the same way. Its files read
//! back as `ArrowWriter`'s do (same schema metadata, same row groups), and the bytes do not depend
//! on the number of threads.
//!
//! It also picks, per part, which string columns get a dictionary: a column whose first values
//! are mostly distinct (an id, a free-text title) would only have every value interned until the
//! dictionary gives up, so it is written plain from the start.
//!
//! And it encodes a column that holds one value on every row (lineage: the source object, the run,
//! the ingest time; a snapshot date) once per file rather than once per row group: every full row
//! group gets a copy of the same encoded chunk. Each batch is checked against the value first; a
//! batch that differs turns the column back into an ordinary one.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use arrow_array::types::{Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Int32Array, Int32DictionaryArray, PrimitiveArray, RecordBatch, StringArray,
    UInt32Array,
};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
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
    properties: WriterProperties,
    /// Columns holding one value so far; not fed to their column writers.
    constants: Vec<Constant>,
    rows_per_group: usize,
    rows_in_group: usize,
    groups: usize,
    threads: usize,
}

/// A column with the same value on every row written so far.
struct Constant {
    /// Field index, which is also the leaf index (only single-leaf fields before any nested one).
    index: usize,
    /// The value, as a one-row array.
    one: ArrayRef,
    /// The column encoded alone for one full row group: the bytes of a one-column Parquet file
    /// and where the chunk lies in it.
    chunk: Option<(Bytes, ColumnCloseResult)>,
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
        let mut constants = Vec::new();
        // Field index = leaf index up to the first nested field.
        let flat = schema.fields().iter().take_while(|f| leaf_count(f.data_type()) == 1);
        for (index, (field, array)) in flat.zip(first.columns()).enumerate() {
            // A copied chunk carries no bloom filter: such columns are encoded as usual.
            let bloom = properties.bloom_filter_properties(&ColumnPath::from(field.name().as_str()));
            if !field.data_type().is_nested()
                && array.len() > 1
                && bloom.is_none()
                && let Some(one) = constant(array)
            {
                constants.push(Constant {
                    index,
                    one,
                    chunk: None,
                });
            }
        }
        let mut builder = properties.into_builder();
        for (field, array) in schema.fields().iter().zip(first.columns()) {
            if mostly_distinct(array) {
                builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        let properties = builder.build();
        // ArrowWriter puts the Arrow schema in the file metadata; its lower half does the rest.
        let (file, factory) =
            ArrowWriter::try_new(sink, schema.clone(), Some(properties.clone()))?.into_serialized_writer()?;
        let columns = factory.create_column_writers(0)?;
        Ok(ColumnParallelWriter {
            file,
            factory,
            schema,
            columns,
            properties,
            constants,
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
        // A column that stops being constant gets the rows it skipped so far, then this batch.
        let mut i = 0;
        while i < self.constants.len() {
            let c = &self.constants[i];
            if same_value(batch.column(c.index), &c.one) {
                i += 1;
                continue;
            }
            let c = self.constants.remove(i);
            if self.rows_in_group > 0 {
                let field = &self.schema.fields()[c.index];
                for leaf in compute_leaves(field, &repeated(&c.one, self.rows_in_group)?)? {
                    self.columns[c.index].write(&leaf)?;
                }
            }
        }
        let mut leaves: Vec<Option<ArrowLeafColumn>> = Vec::with_capacity(self.columns.len());
        for (index, (field, array)) in self.schema.fields().iter().zip(batch.columns()).enumerate() {
            if self.constants.iter().any(|c| c.index == index) {
                leaves.push(None);
            } else {
                leaves.extend(compute_leaves(field, array)?.into_iter().map(Some));
            }
        }
        let mut jobs: Vec<(usize, &mut ArrowColumnWriter, ArrowLeafColumn)> = (self.columns.iter_mut())
            .zip(leaves)
            .zip(leaf_sizes(batch))
            .filter_map(|((writer, leaf), size)| Some((size, writer, leaf?)))
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
        let full = self.rows_in_group == self.rows_per_group;
        for c in &mut self.constants {
            let field = &self.schema.fields()[c.index];
            if full {
                if c.chunk.is_none() {
                    c.chunk = Some(encode_alone(field, &c.one, self.rows_in_group, &self.properties)?);
                }
            } else {
                // The last, shorter group: encoded as usual.
                for leaf in compute_leaves(field, &repeated(&c.one, self.rows_in_group)?)? {
                    self.columns[c.index].write(&leaf)?;
                }
            }
        }
        self.groups += 1;
        let next = self.factory.create_column_writers(self.groups)?;
        let writers = std::mem::replace(&mut self.columns, next);
        let chunks = parallel(writers, self.threads, ArrowColumnWriter::close)?;
        let mut group = self.file.next_row_group()?;
        for (index, chunk) in chunks.into_iter().enumerate() {
            let cached = (self.constants.iter())
                .find(|c| c.index == index && full)
                .and_then(|c| c.chunk.as_ref());
            match cached {
                Some((bytes, close)) => group.append_column(bytes, close.clone())?,
                None => chunk.append_to_row_group(&mut group)?,
            }
        }
        group.close()?;
        self.rows_in_group = 0;
        Ok(())
    }
}

/// One column encoded alone into a one-row-group Parquet file with the writer's properties (so
/// the same column descriptor, encodings, compression and statistics): its bytes and the
/// chunk's metadata and page indexes, ready for `append_column`.
fn encode_alone(
    field: &FieldRef,
    one: &ArrayRef,
    rows: usize,
    properties: &WriterProperties,
) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
    // A string as a dictionary of one: the same Parquet column, without the value `rows` times
    // in memory.
    let (field, column) = match one.data_type() {
        DataType::Utf8 => {
            let keys = Int32Array::from(vec![0; rows]);
            let column: ArrayRef = Arc::new(Int32DictionaryArray::try_new(keys, one.clone())?);
            let field = Field::new(field.name(), column.data_type().clone(), field.is_nullable());
            (Arc::new(field), column)
        }
        _ => (field.clone(), repeated(one, rows)?),
    };
    let schema = Arc::new(Schema::new(vec![field]));
    let batch = RecordBatch::try_new(schema.clone(), vec![column])?;
    let properties = properties
        .clone()
        .into_builder()
        .set_max_row_group_row_count(Some(rows.max(1)))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))?;
    writer.write(&batch)?;
    let bytes = Bytes::from(writer.into_inner()?);
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&bytes)?;
    let chunk = metadata.row_group(0).column(0).clone();
    let close = ColumnCloseResult {
        bytes_written: chunk.compressed_size() as u64,
        rows_written: rows as u64,
        column_index: (metadata.column_index()).and_then(|groups| groups.first()?.first().cloned()),
        offset_index: (metadata.offset_index()).and_then(|groups| groups.first()?.first().cloned()),
        metadata: chunk,
        bloom_filter: None,
    };
    Ok((bytes, close))
}

/// `one` (a one-row array) `rows` times.
fn repeated(one: &ArrayRef, rows: usize) -> Result<ArrayRef, ParquetError> {
    let zeros = UInt32Array::from(vec![0u32; rows]);
    Ok(arrow_select::take::take(one, &zeros, None)?)
}

/// The column's one value as a one-row array, if every row holds it (all null counts).
fn constant(array: &ArrayRef) -> Option<ArrayRef> {
    let one = array.slice(0, 1);
    same_value(array, &one).then_some(one)
}

/// Whether every row of `array` holds the value of the one-row `one` (null included). Types
/// other than strings and the integer-backed ones never count as constant.
fn same_value(array: &ArrayRef, one: &ArrayRef) -> bool {
    if array.data_type() != one.data_type() {
        return false;
    }
    if one.is_null(0) {
        return array.null_count() == array.len();
    }
    if array.null_count() > 0 {
        return false;
    }
    if let (Some(a), Some(o)) = (
        array.as_any().downcast_ref::<StringArray>(),
        one.as_any().downcast_ref::<StringArray>(),
    ) {
        let value = o.value(0).as_bytes();
        let offsets = a.value_offsets();
        let lengths_match = offsets.windows(2).all(|w| (w[1] - w[0]) as usize == value.len());
        let (start, end) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
        return lengths_match
            && (value.is_empty() || a.value_data()[start..end].chunks_exact(value.len()).all(|v| v == value));
    }
    fn primitive<T: ArrowPrimitiveType>(array: &ArrayRef, one: &ArrayRef) -> Option<bool> {
        let a = array.as_any().downcast_ref::<PrimitiveArray<T>>()?;
        let value = one.as_any().downcast_ref::<PrimitiveArray<T>>()?.value(0);
        Some(a.values().iter().all(|v| *v == value))
    }
    primitive::<Int32Type>(array, one)
        .or_else(|| primitive::<Int64Type>(array, one))
        .or_else(|| primitive::<Date32Type>(array, one))
        .or_else(|| primitive::<TimestampMicrosecondType>(array, one))
        .unwrap_or(false)
}

fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => leaf_count(f.data_type()),
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::Map(f, _) => leaf_count(f.data_type()),
        _ => 1,
    }
}

/// Approximate encoded weight of each leaf column of `batch`, in leaf order (nested columns
/// count once per leaf, which is all the scheduling needs).
fn leaf_sizes(batch: &RecordBatch) -> Vec<usize> {
    let mut sizes = Vec::new();
    for array in batch.columns() {
        let n = leaf_count(array.data_type());
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

#[cfg(test)]
mod tests {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{Date32Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::ParquetMetaData;

    use super::*;

    const GROUP: usize = 1000;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("day", DataType::Date32, true),
            Field::new("nothing", DataType::Utf8, true),
            Field::new("kind", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]))
    }

    /// Rows `from..to`; `source` changes value from row `source_changes_at` on.
    fn batch(from: usize, to: usize, source_changes_at: usize) -> RecordBatch {
        let rows = from..to;
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in rows.clone() {
            tags.values().append_value("Drama");
            if i % 3 == 0 {
                tags.values().append_value("Comedy");
            }
            tags.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.clone().map(|i| format!("tt{i:07}")))),
            Arc::new(StringArray::from_iter_values(rows.clone().map(|i| {
                if i < source_changes_at {
                    "bronze/a.tsv"
                } else {
                    "bronze/b.tsv"
                }
            }))),
            Arc::new(Date32Array::from_iter_values(rows.clone().map(|_| 20_000))),
            Arc::new(StringArray::new_null(to - from)),
            Arc::new(StringArray::from_iter(
                rows.clone().map(|i| (i % 7 != 0).then_some(["movie", "short"][i % 2])),
            )),
            Arc::new(Int64Array::from_iter(rows.map(|i| (i % 5 != 0).then_some(i as i64)))),
            Arc::new(tags.finish()),
        ];
        RecordBatch::try_new(schema(), columns).expect("batch")
    }

    fn properties() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .set_max_row_group_row_count(Some(GROUP))
            .build()
    }

    fn write(batches: &[RecordBatch], threads: usize) -> Vec<u8> {
        let mut writer =
            ColumnParallelWriter::try_new(Vec::new(), schema(), properties(), &batches[0], threads).expect("writer");
        for b in batches {
            writer.write(b).expect("write");
        }
        writer.into_inner().expect("close")
    }

    fn read(bytes: Vec<u8>) -> (Vec<RecordBatch>, ParquetMetaData) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).expect("parquet");
        let metadata = reader.metadata().as_ref().clone();
        let batches = reader
            .build()
            .expect("reader")
            .collect::<Result<Vec<_>, _>>()
            .expect("read");
        (batches, metadata)
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow_select::concat::concat_batches(&schema(), batches).expect("concat")
    }

    #[test]
    fn reads_back_what_was_written_constants_included() {
        // 2.5 groups, batches that straddle group edges; `source` stops being constant in the
        // middle of the second group, after a full group was written from the cached chunk.
        let batches: Vec<RecordBatch> = (0..10).map(|b| batch(b * 250, b * 250 + 250, 1_300)).collect();
        let (read_back, metadata) = read(write(&batches, 2));
        assert_eq!(concat(&read_back), concat(&batches));
        assert_eq!(metadata.num_row_groups(), 3);
        let rows: Vec<i64> = metadata.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(rows, [1000, 1000, 500]);
        // The constant date of a full group comes from the cached chunk, with its statistics.
        let day = metadata.row_group(1).column(2);
        let stats = day.statistics().expect("statistics");
        assert_eq!(stats.null_count_opt(), Some(0));
        assert_eq!(day.num_values(), 1000);
    }

    #[test]
    fn the_same_bytes_on_one_thread_or_two_and_the_same_rows_as_arrow_writer() {
        let batches: Vec<RecordBatch> = (0..6).map(|b| batch(b * 400, b * 400 + 400, usize::MAX)).collect();
        let two = write(&batches, 2);
        assert_eq!(write(&batches, 1), two, "threads change nothing in the bytes");

        let mut plain = ArrowWriter::try_new(Vec::new(), schema(), Some(properties())).expect("writer");
        for b in &batches {
            plain.write(b).expect("write");
        }
        let (expected, _) = read(plain.into_inner().expect("close"));
        let (ours, _) = read(two);
        assert_eq!(concat(&ours), concat(&expected));
    }

    #[test]
    fn a_column_of_mostly_distinct_strings_has_no_dictionary() {
        let batches = [batch(0, 2_000, usize::MAX)];
        let (_, metadata) = read(write(&batches, 2));
        let encodings = |i: usize| metadata.row_group(0).column(i).encodings().collect::<Vec<_>>();
        assert!(
            !encodings(0).contains(&parquet::basic::Encoding::RLE_DICTIONARY),
            "id: {:?}",
            encodings(0)
        );
        assert!(
            encodings(4).contains(&parquet::basic::Encoding::RLE_DICTIONARY),
            "kind keeps its dictionary"
        );
    }

    #[test]
    fn constant_detection_is_exact() {
        let strings = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        assert!(constant(&strings(vec![Some("ab"), Some("ab"), Some("ab")])).is_some());
        assert!(constant(&strings(vec![Some("ab"), Some("ab"), Some("abc")])).is_none());
        assert!(constant(&strings(vec![Some("ab"), Some("ba")])).is_none());
        assert!(constant(&strings(vec![Some("ab"), None])).is_none());
        assert!(constant(&strings(vec![None, None])).is_some());
        assert!(constant(&strings(vec![Some(""), Some("")])).is_some());
        assert!(constant(&strings(vec![Some(""), Some("a")])).is_none());
        let sliced = strings(vec![Some("x"), Some("ab"), Some("ab")]).slice(1, 2);
        assert!(constant(&sliced).is_some(), "a slice is judged by its own rows");
        let ints = Arc::new(Int64Array::from(vec![3, 3, 4])) as ArrayRef;
        assert!(constant(&ints).is_none());
        assert!(constant(&ints.slice(0, 2)).is_some());
    }
}
