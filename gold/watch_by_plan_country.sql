-- Gold: daily viewing by subscription plan and the user's country (issue 17), from the watch
-- events enriched as of their time: each event counts under the plan its user had when it
-- happened, so an upgrade moves what a viewer watches afterwards, never what they watched before.
--
-- Watch time is what watch_finished events report (position_seconds). Events whose user had no
-- subscription then, or is not known yet, keep their own rows (plan NULL, dimension_status
-- saying which), so the day's totals are silver's.
SELECT
    event_date,
    plan,
    user_country AS country,
    dimension_status,
    count(DISTINCT user_id) AS active_viewers,
    count(*) FILTER (WHERE event_type = 'watch_started') AS sessions_started,
    coalesce(sum(position_seconds) FILTER (WHERE event_type = 'watch_finished'), 0) AS watch_seconds,
    count(*) AS events
FROM watch_events
GROUP BY event_date, plan, user_country, dimension_status
ORDER BY event_date, plan, country, dimension_status
