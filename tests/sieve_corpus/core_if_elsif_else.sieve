require "fileinto";
if header :contains "subject" "present" {
    fileinto "Presents";
} elsif address :is :domain "from" "python.example.org" {
    fileinto "Python";
} elsif exists "X-Spam-Flag" {
    fileinto "Flagged";
} else {
    keep;
}
