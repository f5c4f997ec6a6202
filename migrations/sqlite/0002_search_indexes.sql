-- City is the filter nearly every search carries; with the sort key behind it in one index, a
-- city search walks rows already in order and stops after one page instead of sorting the city.
CREATE INDEX properties_city_price   ON properties (city COLLATE NOCASE, price_cents, id);
CREATE INDEX properties_city_created ON properties (city COLLATE NOCASE, created_at, id);
CREATE INDEX properties_city_size    ON properties (city COLLATE NOCASE, size_sqft, id);
DROP INDEX properties_city;
