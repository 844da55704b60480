-- pgbench script: the key lookup the database route performs, for a
-- random order of the benchmark's data set.
\set n random(1, :orders)
SELECT body FROM orders WHERE order_uid = 'bench-' || lpad(:n::text, 8, '0');
