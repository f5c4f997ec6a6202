-- bench/peer_fastapi/pgbench_created_at_desc.sql (used by bench/postgres.sh): the search hearth's store_sql.c
-- builds for the query mix of bench/search_vary.lua, sort created_at desc, with the same random draws.
-- The city is drawn as an index into the same 8 names. Prices in cents.
\set ci random(1, 8)
\set beds random(1, 4)
\set lo 2500000 * random(2, 4)
\set hi 10000000 + 5000000 * random(1, 8)
SELECT p.id, p.title, p.description, p.price_cents, p.location, p.city, p.state, p.zip, p.latitude, p.longitude, p.bedrooms, p.bathrooms, p.size_sqft, p.lot_size_sqft, p.year_built, p.amenities, p.image_urls, p.school_rating, p.commute_time, p.property_type, p.status, NULL, p.source, p.external_id, p.owner_id, p.version, p.created_at, p.updated_at FROM properties p WHERE true AND p.price_cents >= :lo AND p.price_cents <= :hi AND p.bedrooms >= :beds AND lower(p.city) = lower((ARRAY['Ames', 'Sacramento', 'Elk Grove', 'Roseville', 'Citrus Heights', 'Antelope', 'Rancho Cordova', 'Lincoln'])[:ci]) ORDER BY p.created_at DESC, p.id DESC LIMIT 21;
