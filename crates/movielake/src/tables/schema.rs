//! A contract that changed since its table was created: what a commit may change in the
//! table's schema. A data engineer adds an optional column to a contract and the next commit
//! writes files that carry it; unless the table's own schema names it too, every reader of the
//! table drops it silently. So the commit that first writes the column also records it, in the
//! same commit (a Delta `metaData` action), and changes that would break what readers already
//! hold are refused with what to do instead.

use deltalake::kernel::{StructField, StructType};

/// The table schema a commit of files written with `wanted` needs: `None` when `table` already
/// serves them; `Some` with `table`'s columns followed by the new ones, and columns that became
/// optional marked so. `Err` says why the files cannot go into this table.
pub fn evolve(table: &StructType, wanted: &StructType) -> Result<Option<StructType>, String> {
    let mut changed = false;
    let mut fields: Vec<StructField> = Vec::with_capacity(table.fields().len() + 1);
    for have in table.fields() {
        let Some(want) = wanted.field(have.name()) else {
            if have.is_nullable() {
                // Files without the column read as nulls in it: history keeps its values.
                fields.push(have.clone());
                continue;
            }
            return Err(format!(
                "column '{}' is required in the table but no longer in the contract; keep it in \
                 the contract (required = false if it stops coming), or write a new table",
                have.name()
            ));
        };
        if want.data_type() != have.data_type() {
            return Err(format!(
                "column '{}' is {} in the table and {} in the contract; a type cannot change in \
                 place: add a column with a new name, or write a new table",
                have.name(),
                have.data_type(),
                want.data_type()
            ));
        }
        let mut field = have.clone();
        if want.is_nullable() && !have.is_nullable() {
            field.nullable = true;
            changed = true;
        }
        fields.push(field);
    }
    for want in wanted.fields() {
        if table.field(want.name()).is_some() {
            continue;
        }
        if !want.is_nullable() {
            return Err(format!(
                "new column '{}' is required, but the rows already in the table do not have it; \
                 add it with required = false",
                want.name()
            ));
        }
        fields.push(want.clone());
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    StructType::try_new(fields).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use deltalake::kernel::{DataType, StructField, StructType};

    use super::evolve;

    fn schema(fields: &[(&str, DataType, bool)]) -> StructType {
        StructType::try_new(
            fields
                .iter()
                .map(|(name, ty, nullable)| StructField::new(*name, ty.clone(), *nullable)),
        )
        .expect("schema")
    }

    fn names(s: &StructType) -> Vec<(String, bool)> {
        s.fields().map(|f| (f.name().clone(), f.is_nullable())).collect()
    }

    #[test]
    fn the_same_columns_change_nothing() {
        let s = schema(&[("id", DataType::STRING, false), ("n", DataType::LONG, true)]);
        assert_eq!(evolve(&s, &s), Ok(None));
    }

    #[test]
    fn a_new_optional_column_is_added_after_the_existing_ones() {
        let table = schema(&[("id", DataType::STRING, false), ("day", DataType::DATE, true)]);
        let wanted = schema(&[
            ("id", DataType::STRING, false),
            ("app", DataType::STRING, true),
            ("day", DataType::DATE, true),
        ]);
        let evolved = evolve(&table, &wanted).expect("allowed").expect("changed");
        assert_eq!(
            names(&evolved),
            [("id".into(), false), ("day".into(), true), ("app".into(), true)]
        );
    }

    #[test]
    fn a_column_that_became_optional_is_marked_so_and_a_stricter_one_changes_nothing() {
        let table = schema(&[("id", DataType::STRING, false), ("n", DataType::LONG, true)]);
        let relaxed = schema(&[("id", DataType::STRING, true), ("n", DataType::LONG, true)]);
        let evolved = evolve(&table, &relaxed).expect("allowed").expect("changed");
        assert_eq!(names(&evolved), [("id".into(), true), ("n".into(), true)]);
        let stricter = schema(&[("id", DataType::STRING, false), ("n", DataType::LONG, false)]);
        assert_eq!(evolve(&table, &stricter), Ok(None));
    }

    #[test]
    fn an_optional_column_left_out_stays_in_the_table() {
        let table = schema(&[("id", DataType::STRING, false), ("old", DataType::LONG, true)]);
        let wanted = schema(&[("id", DataType::STRING, false)]);
        assert_eq!(evolve(&table, &wanted), Ok(None));
    }

    #[test]
    fn breaking_changes_are_refused_with_what_to_do() {
        let table = schema(&[("id", DataType::STRING, false), ("n", DataType::LONG, true)]);
        let retyped = schema(&[("id", DataType::STRING, false), ("n", DataType::STRING, true)]);
        let e = evolve(&table, &retyped).expect_err("type change");
        assert!(e.contains("'n'") && e.contains("new name"), "{e}");
        let required_new = schema(&[
            ("id", DataType::STRING, false),
            ("n", DataType::LONG, true),
            ("m", DataType::LONG, false),
        ]);
        let e = evolve(&table, &required_new).expect_err("required new column");
        assert!(e.contains("'m'") && e.contains("required = false"), "{e}");
        let dropped = schema(&[("n", DataType::LONG, true)]);
        let e = evolve(&table, &dropped).expect_err("required column dropped");
        assert!(e.contains("'id'"), "{e}");
    }
}
