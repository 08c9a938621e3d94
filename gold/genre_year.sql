-- Gold: per genre and release year, from the latest snapshot of The Movies Dataset: releases,
-- budget, revenue, profit, average popularity, and the genre's popularity rank within its year
-- (most_popular marks rank 1: the genre whose movies have the highest average popularity).
--
-- As in company_year: unknown budgets/revenues (0 in the source) are NULL and not summed;
-- profit counts movies whose budget and revenue are both known.
WITH latest AS (
    SELECT max(snapshot_date) AS snapshot_date FROM movies_dataset_movies
), movies AS (
    SELECT m.* FROM movies_dataset_movies m JOIN latest ON m.snapshot_date = latest.snapshot_date
), genres AS (
    SELECT g.* FROM movies_dataset_movie_genres g JOIN latest ON g.snapshot_date = latest.snapshot_date
), per_genre AS (
    SELECT
        g.genre_name AS genre,
        m.release_year AS year,
        count(*) AS releases,
        sum(m.budget) AS total_budget,
        sum(m.revenue) AS total_revenue,
        sum(m.revenue - m.budget) AS profit,
        count(m.revenue - m.budget) AS movies_with_profit,
        avg(m.popularity) AS avg_popularity
    FROM genres g
    JOIN movies m ON m.id = g.movie_id
    WHERE m.release_year IS NOT NULL
    GROUP BY g.genre_name, m.release_year
)
SELECT
    *,
    rank() OVER (PARTITION BY year ORDER BY avg_popularity DESC) AS popularity_rank,
    rank() OVER (PARTITION BY year ORDER BY avg_popularity DESC) = 1 AS most_popular
FROM per_genre
ORDER BY year, popularity_rank, genre
