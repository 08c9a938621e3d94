-- Gold: releases per production company, release year and genre (latest snapshot of The Movies
-- Dataset). A movie with three genres counts once in each of them.
WITH latest AS (
    SELECT max(snapshot_date) AS snapshot_date FROM movies_dataset_movies
), movies AS (
    SELECT m.* FROM movies_dataset_movies m JOIN latest ON m.snapshot_date = latest.snapshot_date
), companies AS (
    SELECT c.* FROM movies_dataset_movie_production_companies c JOIN latest ON c.snapshot_date = latest.snapshot_date
), genres AS (
    SELECT g.* FROM movies_dataset_movie_genres g JOIN latest ON g.snapshot_date = latest.snapshot_date
)
SELECT
    c.company_id,
    max(c.company_name) AS company_name,
    m.release_year AS year,
    g.genre_name AS genre,
    count(*) AS releases
FROM companies c
JOIN movies m ON m.id = c.movie_id
JOIN genres g ON g.movie_id = m.id
WHERE m.release_year IS NOT NULL
GROUP BY c.company_id, m.release_year, g.genre_name
ORDER BY year, c.company_id, genre
