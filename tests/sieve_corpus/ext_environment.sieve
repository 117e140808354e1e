require ["environment", "fileinto"];
# RFC 5183: an item the implementation does not know makes the test false;
# "location" is "MDA" or "MS" for a delivery, both start with M.
if environment :is "x-no-such-item" "" { fileinto "Unknown"; }
if environment :matches "location" "M*" { fileinto "Delivery"; }
