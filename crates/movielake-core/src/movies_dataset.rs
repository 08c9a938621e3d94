//! The Movies Dataset (Kaggle) CSV files into silver tables.
