if size :over "10M" { keep; }
