-- Gold: money and popularity per production company and release year, from the latest snapshot
-- of The Movies Dataset.
--
-- budget and revenue are NULL in silver where the source says 0 (unknown; see budget_unknown /
-- revenue_unknown), so sums only add known values, and profit only counts movies whose budget
-- and revenue are both known (movies_with_profit says how many). Movies without a release date
-- have no year and are left out.
WITH latest AS (
    SELECT max(snapshot_date) AS snapshot_date FROM movies_dataset_movies
), movies AS (
    SELECT m.* FROM movies_dataset_movies m JOIN latest ON m.snapshot_date = latest.snapshot_date
), companies AS (
    SELECT c.* FROM movies_dataset_movie_production_companies c JOIN latest ON c.snapshot_date = latest.snapshot_date
)
SELECT
    c.company_id,
    max(c.company_name) AS company_name,
    m.release_year AS year,
    count(*) AS releases,
    sum(m.budget) AS total_budget,
    sum(m.revenue) AS total_revenue,
    sum(m.revenue - m.budget) AS profit,
    count(m.revenue - m.budget) AS movies_with_profit,
    avg(m.popularity) AS avg_popularity
FROM companies c
JOIN movies m ON m.id = c.movie_id
WHERE m.release_year IS NOT NULL
GROUP BY c.company_id, m.release_year
ORDER BY year, c.company_id
